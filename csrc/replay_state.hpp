// A saved replay state (replay.npz) and the check it must pass before a store takes it: its
// options, the shapes of its arrays, and that its flags, cursors and episode positions are what
// start()/add() could have written, with len counted by the validity rules.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "replay_options.hpp"
#include "replay_rules.hpp"
#include "rng.hpp"

namespace fastdqn {

template <class T>
struct ArrayRef {  // caller-owned C-contiguous data and its shape
    const T* data = nullptr;
    std::vector<int64_t> shape;
};

struct SavedState {
    ReplayOptions options;        // what the state was saved with
    ArrayRef<uint8_t> frames;     // (capacity, *frame_shape) of options.dtype, as bytes
    ArrayRef<int32_t> actions;    // (capacity,) each
    ArrayRef<float> rewards;
    ArrayRef<uint8_t> flags, epos;
    ArrayRef<int64_t> written;    // (num_envs,) each: the streams' cursors
    ArrayRef<uint8_t> open;
    ArrayRef<uint64_t> rng;       // (4,)
    ArrayRef<double> priorities;  // (capacity,): priority^alpha of each slot, 0 where none
    double max_priority = 1.0;
    int64_t len = 0;              // sampleable transitions, as the saved store counted them
};

namespace detail {

[[noreturn]] inline void state_error(const std::string& what) { throw std::invalid_argument("replay state" + what); }

inline void expect_shape(const char* key, const std::vector<int64_t>& got, const std::vector<int64_t>& want) {
    if (got != want)
        state_error(std::string("['") + key + "']: expected shape " + shape_text(want) + ", got " + shape_text(got));
}

// One stream's metadata (s.written already in range); returns its valid transitions.
inline int64_t check_stream(const Rules& r, const EnvStream& s, int64_t e, bool open) {
    const std::string where = ": stream " + std::to_string(e) + ": expected ";
    const int64_t w = s.written, oldest = s.oldest();
    const uint8_t kEnd = kTerminated | kTruncated;
    for (int64_t t = w; t < s.cap; ++t)
        if (r.flags[s.offset + t] || r.epos[s.offset + t])
            state_error(where + "zero metadata in its " + std::to_string(s.cap - w) +
                        " unwritten slots, got non-zero at frame " + std::to_string(t));
    for (int64_t t = oldest; t < w; ++t) {
        const uint8_t f = r.flags[s.slot(t)];
        if ((f & ~(kHasTransition | kEnd)) || ((f & kEnd) && !(f & kHasTransition)))
            state_error(where + "flags made of has/terminated/truncated bits, got " + std::to_string(f) + " at frame " +
                        std::to_string(t));
    }
    if (w > 0 && r.flags[s.slot(w - 1)])
        state_error(where + "no transition on the last written frame, got flags " + std::to_string(r.flags[s.slot(w - 1)]));
    // Frame t+1 continues t's episode exactly when t has a transition; then epos advances by one.
    for (int64_t t = oldest; t + 1 < w; ++t) {
        const uint8_t f = r.flags[s.slot(t)], next = r.epos[s.slot(t + 1)];
        const bool cont = f & kHasTransition;
        if (cont != (next > 0) || (cont && next != std::min(r.epos[s.slot(t)] + 1, 255)))
            state_error(where + "episode positions that follow its transitions, got epos " + std::to_string(next) +
                        " at frame " + std::to_string(t + 1));
        if (cont && (f & kEnd) && r.flags[s.slot(t + 1)])
            state_error(where + "an ended episode's last frame to have no transition, got one at frame " +
                        std::to_string(t + 1));
    }
    const bool ended = w >= 2 && r.epos[s.slot(w - 1)] > 0 && (r.flags[s.slot(w - 2)] & kEnd);
    const bool want_open = w >= 1 && !ended;
    if (open != want_open)
        state_error(where + "open=" + (want_open ? "True" : "False") + " from its frames, got " + (open ? "True" : "False"));
    int64_t valid = 0;
    for (int64_t t = oldest; t + 1 < w; ++t) valid += r.valid(s, t, oldest);
    return valid;
}

}  // namespace detail

// Throws std::invalid_argument naming the first thing wrong with `st` for a store made with
// `mine`; returns the streams it describes (what the store then takes).
inline std::vector<EnvStream> check_saved_state(const ReplayOptions& mine, const SavedState& st) {
    using detail::expect_shape;
    using detail::state_error;
    const std::string mismatch = mine.state_mismatch(st.options);
    if (!mismatch.empty()) throw std::invalid_argument(mismatch);
    const int64_t cap = mine.capacity, n = mine.num_envs;
    std::vector<int64_t> frames{cap};
    frames.insert(frames.end(), mine.frame_shape.begin(), mine.frame_shape.end());
    expect_shape("frames", st.frames.shape, frames);
    expect_shape("actions", st.actions.shape, {cap});
    expect_shape("rewards", st.rewards.shape, {cap});
    expect_shape("flags", st.flags.shape, {cap});
    expect_shape("epos", st.epos.shape, {cap});
    expect_shape("written", st.written.shape, {n});
    expect_shape("open", st.open.shape, {n});
    expect_shape("rng", st.rng.shape, {4});
    expect_shape("priorities", st.priorities.shape, {cap});
    for (int64_t i = 0; i < cap; ++i) {
        if (!std::isfinite(st.rewards.data[i]))
            state_error("['rewards']: expected finite values, got " + number_text(st.rewards.data[i]) + " at " +
                        std::to_string(i));
        if (st.actions.data[i] < 0)
            state_error("['actions']: expected values >= 0, got " + std::to_string(st.actions.data[i]) + " at " +
                        std::to_string(i));
        if (!(st.priorities.data[i] >= 0.0 && std::isfinite(st.priorities.data[i])))
            state_error("['priorities']: expected finite values >= 0, got " + number_text(st.priorities.data[i]) + " at " +
                        std::to_string(i));
    }
    if (!(st.max_priority > 0.0 && std::isfinite(st.max_priority)))
        state_error("['max_priority']: expected a finite number > 0, got " + number_text(st.max_priority));
    if (!Rng::usable_state(st.rng.data)) state_error("['rng']: expected a non-zero xoshiro state, got all zeros");
    std::vector<EnvStream> streams = split_streams(cap, n);
    const Rules rules{st.flags.data, st.epos.data, mine.stack, mine.n_step};
    int64_t valid = 0;
    for (int64_t e = 0; e < n; ++e) {
        const int64_t w = st.written.data[e];
        // written < 2^62 keeps written + 1 from overflowing
        if (w < 0 || w >= (int64_t{1} << 62))
            state_error(": stream " + std::to_string(e) + ": expected written in [0, 2^62), got " + std::to_string(w));
        streams[e].written = w;
        streams[e].open = st.open.data[e] != 0;
        valid += detail::check_stream(rules, streams[e], e, streams[e].open);
    }
    if (st.len != valid)
        state_error("['len']: expected " + std::to_string(valid) + " (counted from the arrays), got " +
                    std::to_string(st.len));
    return streams;
}

}  // namespace fastdqn
