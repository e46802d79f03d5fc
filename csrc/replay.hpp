// Frame-deduplicating replay storage: one ring of frames per env stream, each frame stored once.
//
// A stream's slots hold its frames and transitions (replay_rules.hpp: which transitions are
// valid). The stack for t is rebuilt at sample time from f_{t-stack+1..t} of the same episode;
// frames before the episode's first are padded (zeros, or the first frame repeated). A sample of
// t returns the discounted sum of rewards t..t+k-1, the stack at t+k as next_obs, done =
// terminated at t+k-1, and discount = gamma^k (a truncation bootstraps from t+k). valid_ counts
// the valid transitions exactly, so len() is the number of sampleable ones.
//
// Sampling: uniform (rejection over retained slots; at most stack+episode-ends are rejected) or
// prioritized (Schaul et al. 2016, proportional: a sum tree and a min tree over every slot,
// sum_tree.hpp, hold priority^alpha for the valid transitions and 0 for the rest). The two
// differ only in how a row's transition is picked (pick()); a transition gets the largest
// priority seen so far when it becomes valid.
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
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.hpp"
#include "replay_options.hpp"
#include "replay_rules.hpp"
#include "replay_state.hpp"
#include "rng.hpp"
#include "sum_tree.hpp"

namespace fastdqn {

// A batch's caller-allocated outputs: window_slots [batch, window()] (the slot of each frame of a
// row, -1 for a zero pad frame), the fields [batch], weights and indices [batch] from a
// prioritized store only (null from a uniform one), frames [batch, window(), frame_bytes] or null.
struct BatchOut {
    int64_t* window_slots;
    int64_t* action;
    float *reward, *done, *discount;
    float* weights = nullptr;
    int64_t* indices = nullptr;
    uint8_t* frames = nullptr;
};

class ReplayStore {
public:
    // Throws std::invalid_argument (ReplayOptions::validate) for a value out of range.
    explicit ReplayStore(const ReplayOptions& options)
        : opt_((options.validate(), options)), frame_bytes_(opt_.frame_bytes()), pad_repeat_(opt_.pad_repeat()),
          stack_(static_cast<int>(opt_.stack)), n_step_(static_cast<int>(opt_.n_step)), rng_(opt_.seed),
          envs_(split_streams(opt_.capacity, opt_.num_envs)) {
        const auto cap = static_cast<size_t>(opt_.capacity);
        if (opt_.store_frames) frames_.assign(cap * static_cast<size_t>(frame_bytes_), 0);
        actions_.assign(cap, 0);
        rewards_.assign(cap, 0.f);
        flags_.assign(cap, 0);
        epos_.assign(cap, 0);
        if (opt_.prioritized) tree_ = SumMinTree(opt_.capacity);
    }

    const ReplayOptions& options() const { return opt_; }  // fixed for the store's life
    int num_envs() const { return static_cast<int>(envs_.size()); }
    // Frames per sampled row: obs and next_obs share one (stack+1)-frame window for 1-step
    // returns; with n_step > 1 the row is the obs stack then the next_obs stack (2 * stack).
    int window() const { return n_step_ == 1 ? stack_ + 1 : 2 * stack_; }
    int64_t frame_bytes() const { return frame_bytes_; }
    int64_t size() const { std::lock_guard<std::mutex> g(mutex_); return valid_; }
    size_t nbytes() const {
        return frames_.capacity() + actions_.capacity() * sizeof(int32_t) + rewards_.capacity() * sizeof(float) +
               flags_.capacity() + epos_.capacity() + envs_.capacity() * sizeof(EnvStream) + tree_.nbytes() +
               sizeof(*this);
    }

    // Checks that would reject a call; run before any mutation so a rejected call changes nothing.
    void check_env(int env) const {
        if (env < 0 || env >= num_envs())
            throw std::invalid_argument("env: expected an index in [0, " + std::to_string(num_envs()) + "), got " +
                                        std::to_string(env));
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

    // The checks sample() makes before drawing, alone: lets a caller refuse a batch before it
    // allocates the batch's output (a huge batch_size must be a ValueError, not a MemoryError).
    void check_batch(int64_t batch) const {
        std::lock_guard<std::mutex> g(mutex_);
        check_batch_locked(batch);
    }

    // Draw `batch` transitions (with replacement) into `out`, and their frames when out.frames is
    // set. Uniform: equally likely among the valid ones. Prioritized: with probability
    // priority^alpha / total (stratified: one draw per equal slice of the total); weights[b] =
    // (N P(b))^-beta normalised by the largest possible weight, indices[b] = t * num_envs + env
    // for update_priorities.
    void sample(int64_t batch, double beta, const BatchOut& out, int threads) {
        if (out.frames && !opt_.store_frames) throw std::logic_error("this store keeps no frames; pass no frames output");
        if ((out.weights != nullptr) != opt_.prioritized || (out.indices != nullptr) != opt_.prioritized)
            throw std::logic_error("weights and indices: expected both from a prioritized store, neither from a uniform one");
        if (opt_.prioritized && !(beta >= 0.0 && beta <= 1.0))
            throw std::invalid_argument("beta: expected a number in [0, 1], got " + number_text(beta));
        std::lock_guard<std::mutex> g(mutex_);
        check_batch_locked(batch);
        if (opt_.prioritized) draw_rows<true>(batch, beta, out);
        else draw_rows<false>(batch, beta, out);
        if (out.frames) copy_frames(batch * window(), out.window_slots, out.frames, threads);
    }

    // Transition t (an absolute frame index of stream env) as sample() would return it, with its
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
        if (out && opt_.store_frames) copy_frames(window(), window_slots, out, 1);
    }

    // Set the priorities of sampled transitions (indices from sample) to (priority + eps)^alpha.
    // All are checked first: a NaN, negative or infinite priority, an index out of range or one
    // whose transition is no longer sampleable (stale) changes nothing.
    void update_priorities(int64_t n, const int64_t* indices, const double* priorities) {
        if (!opt_.prioritized) throw std::logic_error("this store is not prioritized");
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
            const double p = priorities[i] + opt_.eps;
            max_priority_ = std::max(max_priority_, p);
            tree_.set(envs_[indices[i] % envs].slot(indices[i] / envs), std::pow(p, opt_.alpha));
        }
    }

    // priority^alpha of every slot (0 where nothing can be sampled, and everywhere in a uniform
    // store) and the largest priority so far.
    std::vector<double> leaf_priorities() const {
        std::lock_guard<std::mutex> g(mutex_);
        std::vector<double> out(static_cast<size_t>(opt_.capacity), 0.0);
        if (opt_.prioritized)
            for (int64_t i = 0; i < opt_.capacity; ++i) out[i] = tree_.leaf(i);
        return out;
    }
    double max_priority() const { std::lock_guard<std::mutex> g(mutex_); return max_priority_; }

    // Raw storage for checkpointing (caller holds no lock: used only when no one else touches the store).
    uint8_t* frames_data() { return frames_.data(); }
    int32_t* actions_data() { return actions_.data(); }
    float* rewards_data() { return rewards_.data(); }
    uint8_t* flags_data() { return flags_.data(); }
    uint8_t* epos_data() { return epos_.data(); }
    const std::vector<EnvStream>& streams() const { return envs_; }
    std::vector<uint64_t> rng_state() const { std::lock_guard<std::mutex> g(mutex_); return rng_.state(); }

    // Throws std::invalid_argument naming what is wrong with a saved state for this store.
    void check_state(const SavedState& st) const { check_saved_state(opt_, st); }

    // Replace everything with a saved state; it is checked first and nothing changes when that
    // throws. The frames are taken only when the store keeps them (else the caller moves them).
    // Sampleable slots without a positive priority get the largest one, as a new transition would.
    void load_state(const SavedState& st) {
        std::lock_guard<std::mutex> g(mutex_);
        std::vector<EnvStream> streams = check_saved_state(opt_, st);
        if (opt_.store_frames) std::memcpy(frames_.data(), st.frames.data, frames_.size());
        std::copy(st.actions.data, st.actions.data + opt_.capacity, actions_.begin());
        std::copy(st.rewards.data, st.rewards.data + opt_.capacity, rewards_.begin());
        std::copy(st.flags.data, st.flags.data + opt_.capacity, flags_.begin());
        std::copy(st.epos.data, st.epos.data + opt_.capacity, epos_.begin());
        envs_ = std::move(streams);
        rng_.set_state(st.rng.data);
        max_priority_ = st.max_priority;
        if (opt_.prioritized) tree_.clear();
        valid_ = 0;
        for (const auto& s : envs_)
            for (int64_t t = s.oldest(); t < s.written; ++t)
                if (valid(s, t, s.oldest())) {
                    ++valid_;
                    const double p = st.priorities.data[s.slot(t)];
                    if (opt_.prioritized) tree_.set(s.slot(t), p > 0.0 ? p : std::pow(max_priority_, opt_.alpha));
                }
    }

private:
    struct Pick {
        int env;
        int64_t t;
        float weight;  // prioritized: the importance weight
    };

    // The rows of sample(), the sampler chosen once per batch (a template: no branch per row).
    template <bool kPrioritized>
    void draw_rows(int64_t batch, double beta, const BatchOut& out) {
        int64_t retained = 0;
        for (const auto& s : envs_) retained += s.retained();
        const int width = window();
        for (int64_t b = 0; b < batch; ++b) {
            const Pick p = pick<kPrioritized>(b, batch, beta, retained);
            fill_row(envs_[p.env], p.t, out.window_slots + b * width, out.action + b, out.reward + b, out.done + b,
                     out.discount + b);
            if constexpr (kPrioritized) {
                out.weights[b] = p.weight;
                out.indices[b] = p.t * num_envs() + p.env;
            }
        }
    }

    // Row b's transition: the one place uniform and prioritized sampling differ.
    template <bool kPrioritized>
    Pick pick(int64_t b, int64_t batch, double beta, int64_t retained) {
        if constexpr (kPrioritized) {
            const double u = (static_cast<double>(b) + rng_.unit()) * tree_.total() / static_cast<double>(batch);
            const int64_t slot = tree_.find_prefix(u);
            int e = 0;  // the stream that holds the slot, and the slot's absolute t
            while (e + 1 < num_envs() && envs_[e + 1].offset <= slot) ++e;
            const EnvStream& s = envs_[e];
            const int64_t oldest = s.oldest(), k = slot - s.offset;
            const int64_t t = oldest + ((k - oldest % s.cap) % s.cap + s.cap) % s.cap;
            return {e, t, static_cast<float>(std::pow(tree_.leaf(slot) / tree_.min(), -beta))};
        } else {
            for (;;) {  // rejection keeps the draw uniform over valid transitions
                int64_t u = static_cast<int64_t>(rng_.below(static_cast<uint64_t>(retained)));
                int e = 0;
                while (u >= envs_[e].retained()) u -= envs_[e++].retained();
                const EnvStream& s = envs_[e];
                if (valid(s, s.oldest() + u, s.oldest())) return {e, s.oldest() + u, 1.f};
            }
        }
    }

    Rules rules() const { return {flags_.data(), epos_.data(), stack_, n_step_}; }
    bool valid(const EnvStream& s, int64_t t, int64_t oldest) const { return rules().valid(s, t, oldest); }

    int64_t add_locked(int env, int64_t action, float reward, const uint8_t* next_frame, bool terminated, bool truncated) {
        EnvStream& s = envs_[env];
        const int64_t t = s.written - 1;
        const int64_t slot_t = s.slot(t);
        const int next_pos = std::min(epos_[slot_t] + 1, 255);
        const int64_t slot = push_frame(s, next_frame, static_cast<uint8_t>(next_pos));
        // Transitions t-n+1 .. t can become sampleable now (their tails end at t); none can stop being so.
        const int64_t oldest = s.oldest(), lo = std::max<int64_t>(oldest, t - n_step_ + 1);
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

    // Transition t of s became sampleable / stopped being so: the count and, prioritized, its leaf.
    void became_valid(const EnvStream& s, int64_t t) {
        ++valid_;
        if (opt_.prioritized) tree_.set(s.slot(t), std::pow(max_priority_, opt_.alpha));
    }
    void became_invalid(const EnvStream& s, int64_t t) {
        --valid_;
        if (opt_.prioritized) tree_.set(s.slot(t), 0.0);
    }

    int64_t push_frame(EnvStream& s, const uint8_t* frame, uint8_t pos) {
        const int64_t w = s.written;
        if (w >= s.cap) {  // frame w - cap leaves the ring: drop the transitions whose stack used it
            const int64_t gone = w - s.cap;
            for (int64_t t = gone; t < gone + stack_ && t < w; ++t)
                if (valid(s, t, gone) && !valid(s, t, gone + 1)) became_invalid(s, t);
        }
        const int64_t slot = s.slot(w);
        if (opt_.store_frames) std::memcpy(frames_.data() + slot * frame_bytes_, frame, frame_bytes_);
        actions_[slot] = 0;
        rewards_[slot] = 0.f;
        flags_[slot] = 0;
        epos_[slot] = pos;
        s.written = w + 1;
        return slot;
    }

    void check_batch_locked(int64_t batch) const {
        if (batch < 1) throw std::invalid_argument("batch_size: expected an int >= 1, got " + std::to_string(batch));
        if (valid_ == 0)
            throw std::invalid_argument("sample() before any complete transition was added: expected >= 1 stored, got 0");
        if (batch > valid_)
            throw std::invalid_argument("batch_size " + std::to_string(batch) + " is larger than the " +
                                        std::to_string(valid_) + " transitions stored");
    }

    // Transition t of stream s as a row of window() slots (-1: a zero pad frame) and its fields.
    void fill_row(const EnvStream& s, int64_t t, int64_t* row, int64_t* action, float* reward, float* done,
                  float* discount) const {
        const int64_t sl = s.slot(t);
        const int k = rules().tail(s, t);
        if (n_step_ == 1) {
            stack_slots(s, t, row, stack_ + 1);  // obs and next_obs: one window, next_obs one frame on
            *reward = rewards_[sl];
        } else {
            stack_slots(s, t, row, stack_);
            stack_slots(s, t + k, row + stack_, stack_);
            double sum = 0.0, g = 1.0;  // r_t + gamma r_{t+1} + ... + gamma^{k-1} r_{t+k-1}
            for (int i = 0; i < k; ++i, g *= opt_.gamma) sum += g * rewards_[s.slot(t + i)];
            *reward = static_cast<float>(sum);
        }
        *action = actions_[sl];
        *done = (flags_[s.slot(t + k - 1)] & kTerminated) ? 1.f : 0.f;
        *discount = static_cast<float>(std::pow(opt_.gamma, k));
    }

    // Slots of frames t-stack+1 .. t-stack+width of t's episode (pads before its first frame).
    void stack_slots(const EnvStream& s, int64_t t, int64_t* row, int width) const {
        const int64_t first = t - std::min<int64_t>(epos_[s.slot(t)], stack_ - 1);  // first frame of this stack's episode part
        for (int j = 0; j < width; ++j) {
            const int64_t abs_t = t - (stack_ - 1) + j;
            row[j] = abs_t >= first ? s.slot(abs_t) : (pad_repeat_ ? s.slot(first) : -1);
        }
    }

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

    const ReplayOptions opt_;
    // Derived from opt_ once, for the hot loops.
    const int64_t frame_bytes_;
    const bool pad_repeat_;
    const int stack_, n_step_;
    SumMinTree tree_;            // prioritized only: priority^alpha per slot
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
