// Frame-deduplicating replay storage: one ring of frames per env stream, each frame stored once.
//
// Slot t of a stream holds frame f_t and, once add() has been called after it, the transition
// (f_t, a_t, r_t, f_{t+1}). The stack for t is rebuilt at sample time from f_{t-stack+1..t} of the
// same episode; frames before the episode's first are padded (zeros, or the first frame repeated).
// `t` below is an absolute per-stream frame count; its slot is offset + t % cap.
//
// A transition t is sampleable ("valid") when
//   - add() recorded it (kHasTransition: terminal frames and abandoned episode ends have none),
//   - its next frame t+1 has been written (always true: add writes both at once),
//   - every frame its stack needs, t - min(epos, stack-1) .. t, is still in the ring,
//   - with n-step returns (n_step > 1): its k-step tail is recorded, k = min(n, steps to the end
//     of its episode): transitions t..t+k-1 exist and only t+k-1 may end the episode. An
//     episode abandoned by start() has no end flag, so the transitions whose tail reaches its
//     cut never become sampleable.
// A sample of t returns the discounted sum of rewards t..t+k-1, the stack at t+k as next_obs,
// done = terminated at t+k-1, and discount = gamma^k (a truncation bootstraps from t+k).
// valid_ counts them exactly, so len() is the number of sampleable transitions and sampling is
// uniform over them (rejection over retained slots; at most stack+episode-ends are rejected).
//
// Prioritized replay (Schaul et al. 2016, proportional): a sum tree and a min tree over every
// slot hold priority^alpha for the sampleable transitions and 0 (min: +inf) for the rest, so
// sampling, the importance weights and priority updates cost O(log capacity). A transition gets
// the largest priority seen so far when it becomes sampleable.
//
// Thread safety: every public method takes mutex_, so a prefetch thread may sample while
// another thread adds; add_many checks and writes all streams under one lock (all or nothing).
// The raw-storage accessors (checkpointing) take none: use them only while no one else does.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.hpp"

namespace fastdqn {

enum TransitionFlags : uint8_t { kHasTransition = 1, kTerminated = 2, kTruncated = 4 };

struct EnvStream {
    int64_t offset = 0;    // first slot of this stream in the flat storage
    int64_t cap = 0;       // slots of this stream
    int64_t written = 0;   // frames written so far (absolute count)
    bool open = false;     // an episode is in progress; its last frame is written - 1
    int64_t oldest() const { return written > cap ? written - cap : 0; }
    int64_t retained() const { return written < cap ? written : cap; }
    int64_t slot(int64_t t) const { return offset + t % cap; }
};

// xoshiro256**: fast, small state, and its state can be saved for exact resumes.
class Rng {
public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }
    void reseed(uint64_t seed) {
        for (auto& s : s_) {  // splitmix64 expands the seed
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            s = z ^ (z >> 31);
        }
    }
    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    uint64_t below(uint64_t n) {  // uniform in [0, n) by multiply-shift (bias < n / 2^64)
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }
    std::vector<uint64_t> state() const { return {s_, s_ + 4}; }
    void set_state(const std::vector<uint64_t>& s) {
        if (s.size() != 4) throw std::invalid_argument("rng state must have 4 words, got " + std::to_string(s.size()));
        // All-zero is xoshiro's fixed point: below() would return 0 forever and draw() could spin.
        if (!(s[0] | s[1] | s[2] | s[3])) throw std::invalid_argument("rng state must not be all zeros");
        std::copy(s.begin(), s.end(), s_);
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

class ReplayStore {
public:
    // store_frames=false keeps only the metadata (frames live elsewhere, e.g. on a GPU).
    ReplayStore(int64_t capacity, int num_envs, int64_t frame_bytes, int stack, bool pad_repeat,
                uint64_t seed, bool store_frames = true, int n_step = 1, double gamma = 0.99,
                bool prioritized = false, double alpha = 0.6, double eps = 1e-6)
        : capacity_(capacity), frame_bytes_(frame_bytes), stack_(stack), pad_repeat_(pad_repeat),
          store_frames_(store_frames), n_step_(n_step), gamma_(gamma), prioritized_(prioritized), alpha_(alpha),
          eps_(eps), rng_(seed) {
        if (!(alpha >= 0.0 && alpha <= 1.0)) throw std::invalid_argument("alpha must be in [0, 1], got " + number_text(alpha));
        if (!(eps > 0.0 && std::isfinite(eps))) throw std::invalid_argument("eps must be a finite number > 0, got " + number_text(eps));
        if (n_step < 1 || n_step > 64) throw std::invalid_argument("n_step must be in [1, 64], got " + std::to_string(n_step));
        if (!(gamma >= 0.0 && gamma <= 1.0)) throw std::invalid_argument("gamma must be in [0, 1], got " + number_text(gamma));
        if (num_envs < 1) throw std::invalid_argument("num_envs must be >= 1, got " + std::to_string(num_envs));
        if (stack < 1 || stack > 64) throw std::invalid_argument("stack must be in [1, 64], got " + std::to_string(stack));
        if (frame_bytes < 1) throw std::invalid_argument("frame size must be >= 1 byte");
        const int64_t per_env_min = stack + 1;  // one full stack plus its next frame
        if (capacity < per_env_min * num_envs)
            throw std::invalid_argument("capacity must be >= (stack + 1) * num_envs = " +
                                        std::to_string(per_env_min * num_envs) + ", got " + std::to_string(capacity));
        envs_.resize(num_envs);
        int64_t offset = 0;
        for (int e = 0; e < num_envs; ++e) {  // spread the remainder over the first streams
            envs_[e].offset = offset;
            envs_[e].cap = capacity / num_envs + (e < capacity % num_envs ? 1 : 0);
            offset += envs_[e].cap;
        }
        if (store_frames_ && static_cast<uint64_t>(capacity) > SIZE_MAX / static_cast<uint64_t>(frame_bytes))
            throw std::invalid_argument("capacity * frame size overflows the address space: " + std::to_string(capacity) +
                                        " * " + std::to_string(frame_bytes));
        if (store_frames_) frames_.assign(static_cast<size_t>(capacity) * frame_bytes, 0);
        actions_.assign(capacity, 0);
        rewards_.assign(capacity, 0.f);
        flags_.assign(capacity, 0);
        epos_.assign(capacity, 0);
        if (prioritized_) {
            while (leaves_ < capacity) leaves_ *= 2;
            sum_.assign(2 * static_cast<size_t>(leaves_), 0.0);
            min_.assign(2 * static_cast<size_t>(leaves_), kInf);
        }
    }

    int64_t capacity() const { return capacity_; }
    int num_envs() const { return static_cast<int>(envs_.size()); }
    int stack() const { return stack_; }
    int n_step() const { return n_step_; }
    double gamma() const { return gamma_; }
    // Frames per sampled row: obs and next_obs share one (stack+1)-frame window for 1-step
    // returns; with n_step > 1 the row is the obs stack then the next_obs stack (2 * stack).
    int window() const { return n_step_ == 1 ? stack_ + 1 : 2 * stack_; }
    int64_t frame_bytes() const { return frame_bytes_; }
    bool stores_frames() const { return store_frames_; }
    int64_t size() const { std::lock_guard<std::mutex> g(mutex_); return valid_; }
    size_t nbytes() const {
        return frames_.capacity() + actions_.capacity() * sizeof(int32_t) + rewards_.capacity() * sizeof(float) +
               flags_.capacity() + epos_.capacity() + envs_.capacity() * sizeof(EnvStream) +
               (sum_.capacity() + min_.capacity()) * sizeof(double) + sizeof(*this);
    }
    bool prioritized() const { return prioritized_; }
    double alpha() const { return alpha_; }
    double eps() const { return eps_; }

    // Checks that would reject a call; run before any mutation so a rejected call changes nothing.
    void check_env(int env) const {
        if (env < 0 || env >= num_envs())
            throw std::invalid_argument("env index must be in [0, " + std::to_string(num_envs()) + "), got " + std::to_string(env));
    }
    // The one definition of a valid transition's action and reward (the bindings and Python only
    // check types). `action_text` lets a caller name an action too wide for int64 in the message.
    static std::string action_error(const std::string& action_text) {
        return "action: expected an int in [0, 2^31), got " + action_text;
    }
    static void check_transition(int64_t action, double reward) {
        if (action < 0 || action > INT32_MAX) throw std::invalid_argument(action_error(std::to_string(action)));
        // Beyond float's range the cast to the stored float32 would be undefined, not just inf.
        if (!std::isfinite(reward) || std::fabs(reward) > std::numeric_limits<float>::max())
            throw std::invalid_argument("reward: expected a finite float32 value, got " + number_text(reward));
    }
    static std::string number_text(double v) {  // as Python prints it: 1e+39, nan, -inf
        std::ostringstream os;
        os << v;
        return os.str();
    }

    // Begin an episode; an unfinished one on this stream is abandoned (its last frame gets no transition).
    int64_t start(int env, const uint8_t* frame) {
        check_env(env);
        std::lock_guard<std::mutex> g(mutex_);
        EnvStream& s = envs_[env];
        const int64_t slot = push_frame(s, frame, 0);
        s.open = true;
        return slot;
    }

    // Record (f_t, action, reward, next_frame); returns the slot next_frame went to.
    int64_t add(int env, int64_t action, double reward, const uint8_t* next_frame, bool terminated, bool truncated) {
        check_env(env);
        check_transition(action, reward);
        std::lock_guard<std::mutex> g(mutex_);
        if (!envs_[env].open) throw std::invalid_argument("add() before start() on env " + std::to_string(env) +
                                                          ": expected an open episode, got none");
        return add_locked(env, action, static_cast<float>(reward), next_frame, terminated, truncated);
    }

    // add() on `count` streams at once: streams envs[0..count) (null: all, in order; the caller
    // checked range and distinctness), arrays of count, frames [count, frame_bytes] or null when
    // the store keeps none; truncated may be null. All or nothing: every stream is checked under
    // the same lock that covers the writes, so a concurrent start()/add() cannot slip in between.
    void add_many(const int64_t* action, const float* reward, const uint8_t* next_frames, const bool* terminated,
                  const bool* truncated, int64_t* slots, const int64_t* envs = nullptr, int count = -1) {
        const int n = envs ? count : num_envs();
        auto env_at = [&](int i) { return envs ? static_cast<int>(envs[i]) : i; };
        for (int i = 0; i < n; ++i) check_transition(action[i], reward[i]);
        std::lock_guard<std::mutex> g(mutex_);
        for (int i = 0; i < n; ++i)
            if (!envs_[env_at(i)].open)
                throw std::invalid_argument("add() on env " + std::to_string(env_at(i)) +
                                            " before start(): expected an open episode (begin each with start(first_frame)), got none");
        for (int i = 0; i < n; ++i)
            slots[i] = add_locked(env_at(i), action[i], reward[i], next_frames ? next_frames + i * frame_bytes_ : nullptr,
                                  terminated[i], truncated ? truncated[i] : false);
    }

private:
    int64_t add_locked(int env, int64_t action, float reward, const uint8_t* next_frame, bool terminated, bool truncated) {
        EnvStream& s = envs_[env];
        const int64_t t = s.written - 1;
        const int64_t slot_t = s.slot(t);
        const int next_pos = std::min(epos_[slot_t] + 1, 255);
        const int64_t slot = push_frame(s, next_frame, static_cast<uint8_t>(next_pos));
        // Transitions t-n+1 .. t can become sampleable now (their tails end at t); none can stop being so.
        const int64_t oldest = s.oldest(), lo = std::max(oldest, t - n_step_ + 1);
        bool before[64];
        for (int64_t u = lo; u < t; ++u) before[t - u] = valid(s, u, oldest);
        actions_[slot_t] = static_cast<int32_t>(action);
        rewards_[slot_t] = reward;
        flags_[slot_t] = kHasTransition | (terminated ? kTerminated : 0) | (truncated ? kTruncated : 0);
        if (valid(s, t, oldest)) became_valid(s, t);
        for (int64_t u = lo; u < t; ++u)
            if (!before[t - u] && valid(s, u, oldest)) became_valid(s, u);
        if (terminated || truncated) s.open = false;
        return slot;
    }

public:

    // Draw `batch` transitions uniformly (with replacement). window_slots [batch, window()] gets the
    // slot of each frame of the row, -1 for a zero pad frame.
    void draw(int64_t batch, int64_t* window_slots, int64_t* action, float* reward, float* done, float* discount) {
        std::lock_guard<std::mutex> g(mutex_);
        draw_locked(batch, window_slots, action, reward, done, discount);
    }

    // The checks draw() makes before drawing, alone: lets a caller refuse a batch before it
    // allocates the batch's output (a huge batch_size must be a ValueError, not a MemoryError).
    void check_batch(int64_t batch) const {
        std::lock_guard<std::mutex> g(mutex_);
        check_batch_locked(batch);
    }

    // draw() and copy the windows' frames into out [batch, window(), frame_bytes].
    void sample(int64_t batch, int64_t* window_slots, int64_t* action, float* reward, float* done, float* discount,
                uint8_t* out, int threads) {
        if (!store_frames_) throw std::logic_error("this store keeps no frames; use draw()");
        std::lock_guard<std::mutex> g(mutex_);
        draw_locked(batch, window_slots, action, reward, done, discount);
        copy_frames(batch * window(), window_slots, out, threads);
    }

private:
    // The frames of n window slots into out [n, frame_bytes] (-1: a zero frame). A run of
    // consecutive slots (a window that does not wrap around the ring) is one memcpy, a run of
    // pads one memset. No software prefetch: the non-temporal hint made the copy 4x slower on a
    // Xeon, and plain memcpy of contiguous runs was the fastest there.
    void copy_frames(int64_t n, const int64_t* window_slots, uint8_t* out, int threads) const {
        // Small batches stay on one thread: splitting costs more than copying a few hundred KB.
        const int64_t fb = frame_bytes_;
        const int use = n * fb >= (int64_t{4} << 20) ? threads : 1;
        parallel_for(n, use, [&](int64_t lo, int64_t hi) {
            for (int64_t i = lo, j; i < hi; i = j) {
                const int64_t slot = window_slots[i];
                j = i + 1;
                if (slot < 0) {
                    while (j < hi && window_slots[j] < 0) ++j;
                    std::memset(out + i * fb, 0, static_cast<size_t>((j - i) * fb));
                } else {
                    while (j < hi && window_slots[j] == slot + (j - i)) ++j;
                    std::memcpy(out + i * fb, frames_.data() + slot * fb, static_cast<size_t>((j - i) * fb));
                }
            }
        });
    }

public:
    // Transition t (an absolute frame index of stream env) as draw() would return it, with its
    // frames copied into out [window(), frame_bytes] when the store keeps them (out may be null).
    // It must be sampleable now: lets a caller check what it stored against what sampling rebuilds.
    void transition_at(int env, int64_t t, int64_t* window_slots, int64_t* action, float* reward, float* done,
                       float* discount, uint8_t* out) {
        check_env(env);
        std::lock_guard<std::mutex> g(mutex_);
        const EnvStream& s = envs_[env];
        if (!valid(s, t, s.oldest()))
            throw std::invalid_argument("t: expected a transition stream " + std::to_string(env) +
                                        " can sample now, got " + std::to_string(t) + " (frames " +
                                        std::to_string(s.oldest()) + ".." + std::to_string(s.written - 1) + " kept)");
        fill_row(s, t, window_slots, action, reward, done, discount);
        if (out && store_frames_) copy_frames(window(), window_slots, out, 1);
    }

    // Raw storage for checkpointing (caller holds no lock: used only when no one else touches the store).
    uint8_t* frames_data() { return frames_.data(); }
    int32_t* actions_data() { return actions_.data(); }
    float* rewards_data() { return rewards_.data(); }
    uint8_t* flags_data() { return flags_.data(); }
    uint8_t* epos_data() { return epos_.data(); }
    std::vector<EnvStream>& streams() { return envs_; }
    Rng& rng() { return rng_; }
    // Recompute valid_ (and the trees from `priorities`, one priority^alpha per slot, when prioritized)
    // after the raw storage was restored. A sampleable slot without a positive priority gets the
    // largest one, as a new transition would.
    void recount(const double* priorities = nullptr, double max_priority = 1.0) {
        std::lock_guard<std::mutex> g(mutex_);
        valid_ = 0;
        if (prioritized_) {
            std::fill(sum_.begin(), sum_.end(), 0.0);
            std::fill(min_.begin(), min_.end(), kInf);
            max_priority_ = max_priority;
        }
        for (const auto& s : envs_)
            for (int64_t t = s.oldest(); t < s.written; ++t)
                if (valid(s, t, s.oldest())) {
                    ++valid_;
                    const double p = priorities ? priorities[s.slot(t)] : 0.0;
                    if (prioritized_) set_leaf(s.slot(t), p > 0.0 ? p : std::pow(max_priority_, alpha_));
                }
    }

    // priority^alpha of every slot (0 where nothing can be sampled) and the largest priority so far.
    std::vector<double> leaf_priorities() const {
        std::lock_guard<std::mutex> g(mutex_);
        std::vector<double> out(static_cast<size_t>(capacity_), 0.0);
        if (prioritized_) std::copy(sum_.begin() + leaves_, sum_.begin() + leaves_ + capacity_, out.begin());
        return out;
    }
    double max_priority() const { std::lock_guard<std::mutex> g(mutex_); return max_priority_; }

    // Draw `batch` transitions with probability priority^alpha / total (stratified: one draw per
    // equal slice of the total), as draw() fills rows; weights[b] = (N P(b))^-beta normalised by
    // the largest possible weight, indices[b] = t * num_envs + env for update_priorities.
    void sample_prioritized(int64_t batch, double beta, int64_t* window_slots, int64_t* action, float* reward,
                            float* done, float* discount, float* weights, int64_t* indices, uint8_t* out) {
        if (!prioritized_) throw std::logic_error("this store is not prioritized");
        if (!(beta >= 0.0 && beta <= 1.0)) throw std::invalid_argument("beta: expected a number in [0, 1], got " + number_text(beta));
        std::lock_guard<std::mutex> g(mutex_);
        check_batch_locked(batch);
        const double total = sum_[1], p_min = min_[1];
        const int width = window();
        for (int64_t b = 0; b < batch; ++b) {
            const double u = (static_cast<double>(b) + unit()) * total / static_cast<double>(batch);
            const int64_t slot = find_prefix(u);
            const auto [e, t] = locate(slot);
            fill_row(envs_[e], t, window_slots + b * width, action + b, reward + b, done + b, discount + b);
            weights[b] = static_cast<float>(std::pow(sum_[leaves_ + slot] / p_min, -beta));
            indices[b] = t * num_envs() + e;
        }
        if (out) copy_frames(batch * width, window_slots, out, 1);
    }

    // Set the priorities of sampled transitions (indices from sample_prioritized) to
    // (priority + eps)^alpha. All are checked first: a NaN, negative or infinite priority, an
    // index out of range or one whose transition is no longer sampleable (stale) changes nothing.
    void update_priorities(int64_t n, const int64_t* indices, const double* priorities) {
        if (!prioritized_) throw std::logic_error("this store is not prioritized");
        std::lock_guard<std::mutex> g(mutex_);
        const int64_t envs = num_envs();
        for (int64_t i = 0; i < n; ++i) {
            if (!(priorities[i] >= 0.0) || !std::isfinite(priorities[i]))
                throw std::invalid_argument("priorities: expected finite values >= 0, got " + number_text(priorities[i]) +
                                            " at " + std::to_string(i));
            if (indices[i] < 0)
                throw std::invalid_argument("indices: expected indices from sample(), got " + std::to_string(indices[i]) +
                                            " at " + std::to_string(i));
            const EnvStream& s = envs_[indices[i] % envs];
            const int64_t t = indices[i] / envs;
            if (!valid(s, t, s.oldest()))
                throw std::invalid_argument("indices: expected transitions that can still be sampled, got " +
                                            std::to_string(indices[i]) + " at " + std::to_string(i) +
                                            " (stale: overwritten since it was sampled, or never stored)");
        }
        for (int64_t i = 0; i < n; ++i) {
            const double p = priorities[i] + eps_;
            max_priority_ = std::max(max_priority_, p);
            set_leaf(envs_[indices[i] % envs].slot(indices[i] / envs), std::pow(p, alpha_));
        }
    }

private:
    static constexpr double kInf = std::numeric_limits<double>::infinity();

    // Transition t of s became sampleable / stopped being so: the count and, prioritized, its leaf.
    void became_valid(const EnvStream& s, int64_t t) {
        ++valid_;
        if (prioritized_) set_leaf(s.slot(t), std::pow(max_priority_, alpha_));
    }
    void became_invalid(const EnvStream& s, int64_t t) {
        --valid_;
        if (prioritized_) set_leaf(s.slot(t), 0.0);
    }

    // Leaf `slot` of both trees to p (p = 0: not sampleable; the min tree then holds +inf).
    void set_leaf(int64_t slot, double p) {
        int64_t i = leaves_ + slot;
        sum_[i] = p;
        min_[i] = p > 0.0 ? p : kInf;
        for (i /= 2; i >= 1; i /= 2) {
            sum_[i] = sum_[2 * i] + sum_[2 * i + 1];
            min_[i] = std::min(min_[2 * i], min_[2 * i + 1]);
        }
    }

    // The slot whose prefix range of the sum tree holds u (0 <= u < total), never a zero leaf.
    int64_t find_prefix(double u) const {
        int64_t i = 1;
        while (i < leaves_) {
            const int64_t left = 2 * i;
            if (u < sum_[left] || sum_[left + 1] <= 0.0) i = left;
            else {
                u -= sum_[left];
                i = left + 1;
            }
        }
        if (sum_[i] <= 0.0) {  // rounding put u at the edge of a zero leaf: take the nearest non-zero one
            int64_t j = i;
            while (j > leaves_ && sum_[j] <= 0.0) --j;
            while (j < 2 * leaves_ - 1 && sum_[j] <= 0.0) ++j;
            i = j;
        }
        return i - leaves_;
    }

    // (stream, absolute t) of a slot that holds a sampleable transition.
    std::pair<int, int64_t> locate(int64_t slot) const {
        int e = 0;
        while (e + 1 < num_envs() && envs_[e + 1].offset <= slot) ++e;
        const EnvStream& s = envs_[e];
        const int64_t oldest = s.oldest(), k = slot - s.offset;
        return {e, oldest + ((k - oldest % s.cap) % s.cap + s.cap) % s.cap};
    }

    double unit() { return static_cast<double>(rng_.next() >> 11) * 0x1.0p-53; }  // uniform in [0, 1)

    bool valid(const EnvStream& s, int64_t t, int64_t oldest) const {
        if (t < oldest || t + 1 >= s.written) return false;
        const int64_t sl = s.slot(t);
        if (!(flags_[sl] & kHasTransition)) return false;
        if (t - std::min<int64_t>(epos_[sl], stack_ - 1) < oldest) return false;
        return tail(s, t) > 0;
    }

    // k of transition t (its steps to bootstrap from), 0 while its tail is not recorded yet (or
    // never will be: an abandoned episode). t itself must have a transition.
    int tail(const EnvStream& s, int64_t t) const {
        for (int k = 1;; ++k) {
            if (flags_[s.slot(t + k - 1)] & (kTerminated | kTruncated) || k == n_step_) return k;
            const int64_t u = t + k;  // the next transition of the tail
            if (u + 1 >= s.written || !(flags_[s.slot(u)] & kHasTransition)) return 0;
        }
    }

    int64_t push_frame(EnvStream& s, const uint8_t* frame, uint8_t pos) {
        const int64_t w = s.written;
        if (w >= s.cap) {  // frame w - cap leaves the ring: drop the transitions whose stack used it
            const int64_t gone = w - s.cap;
            for (int64_t t = gone; t < gone + stack_ && t < w; ++t)
                if (valid(s, t, gone) && !valid(s, t, gone + 1)) became_invalid(s, t);
        }
        const int64_t slot = s.slot(w);
        if (store_frames_) std::memcpy(frames_.data() + slot * frame_bytes_, frame, frame_bytes_);
        actions_[slot] = 0;
        rewards_[slot] = 0.f;
        flags_[slot] = 0;
        epos_[slot] = pos;
        s.written = w + 1;
        return slot;
    }

    void check_batch_locked(int64_t batch) const {
        if (batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch));
        if (valid_ == 0)
            throw std::invalid_argument("sample() before any complete transition was added: expected >= 1 stored, got 0");
        if (batch > valid_)
            throw std::invalid_argument("batch_size " + std::to_string(batch) + " is larger than the " +
                                        std::to_string(valid_) + " transitions stored");
    }

    void draw_locked(int64_t batch, int64_t* window_slots, int64_t* action, float* reward, float* done,
                     float* discount) {
        check_batch_locked(batch);
        int64_t retained = 0;
        for (const auto& s : envs_) retained += s.retained();
        const int width = window();
        for (int64_t b = 0; b < batch; ++b) {
            const EnvStream* s = nullptr;
            int64_t t = 0;
            do {  // rejection keeps the draw uniform over valid transitions
                int64_t u = static_cast<int64_t>(rng_.below(static_cast<uint64_t>(retained)));
                for (const auto& env : envs_) {
                    if (u < env.retained()) { s = &env; break; }
                    u -= env.retained();
                }
                t = s->oldest() + u;
            } while (!valid(*s, t, s->oldest()));
            fill_row(*s, t, window_slots + b * width, action + b, reward + b, done + b, discount + b);
        }
    }

    // Transition t of stream s as a row of window() slots (-1: a zero pad frame) and its fields.
    void fill_row(const EnvStream& s, int64_t t, int64_t* row, int64_t* action, float* reward, float* done,
                  float* discount) const {
        const int64_t sl = s.slot(t);
        const int k = tail(s, t);
        if (n_step_ == 1) {
            stack_slots(s, t, row, stack_ + 1);  // obs and next_obs: one window, next_obs one frame on
            *reward = rewards_[sl];
        } else {
            stack_slots(s, t, row, stack_);
            stack_slots(s, t + k, row + stack_, stack_);
            double sum = 0.0, g = 1.0;  // r_t + gamma r_{t+1} + ... + gamma^{k-1} r_{t+k-1}
            for (int i = 0; i < k; ++i, g *= gamma_) sum += g * rewards_[s.slot(t + i)];
            *reward = static_cast<float>(sum);
        }
        *action = actions_[sl];
        *done = (flags_[s.slot(t + k - 1)] & kTerminated) ? 1.f : 0.f;
        *discount = static_cast<float>(std::pow(gamma_, k));
    }

    // Slots of frames t-stack+1 .. t-stack+width of t's episode (pads before its first frame).
    void stack_slots(const EnvStream& s, int64_t t, int64_t* row, int width) const {
        const int64_t first = t - std::min<int64_t>(epos_[s.slot(t)], stack_ - 1);  // first frame of this stack's episode part
        for (int j = 0; j < width; ++j) {
            const int64_t abs_t = t - (stack_ - 1) + j;
            row[j] = abs_t >= first ? s.slot(abs_t) : (pad_repeat_ ? s.slot(first) : -1);
        }
    }

    int64_t capacity_;
    int64_t frame_bytes_;
    int stack_;
    bool pad_repeat_;
    bool store_frames_;
    int n_step_;
    double gamma_;
    bool prioritized_;
    double alpha_, eps_;
    int64_t leaves_ = 1;        // leaves of the trees: capacity rounded up to a power of two
    std::vector<double> sum_;   // [2 * leaves_]: node i sums nodes 2i and 2i+1; leaf leaves_ + slot
    std::vector<double> min_;   // the same shape, minimum of the non-zero leaves (+inf if none)
    double max_priority_ = 1.0;  // largest priority + eps so far: what a new transition gets
    Rng rng_;
    std::vector<EnvStream> envs_;
    std::vector<uint8_t> frames_;
    std::vector<int32_t> actions_;
    std::vector<float> rewards_;
    std::vector<uint8_t> flags_;
    std::vector<uint8_t> epos_;  // position in episode, saturating at 255
    int64_t valid_ = 0;
    mutable std::mutex mutex_;
};

}  // namespace fastdqn
