// The one definition of a sampleable ("valid") transition over a stream's per-slot metadata. The
// store applies it to its own arrays, and its state check to a saved state's before accepting it.
//
// Slot t of a stream holds frame f_t and, once add() has been called after it, the transition
// (f_t, a_t, r_t, f_{t+1}). `t` is an absolute per-stream frame count; its slot is offset + t % cap.
// A transition t is valid when
//   - add() recorded it (kHasTransition: terminal frames and abandoned episode ends have none),
//   - its next frame t+1 has been written (always true: add writes both at once),
//   - every frame its stack needs, t - min(epos, stack-1) .. t, is still in the ring,
//   - with n-step returns (n_step > 1): its k-step tail is recorded, k = min(n, steps to the end
//     of its episode): transitions t..t+k-1 exist and only t+k-1 may end the episode. An
//     episode abandoned by start() has no end flag, so the transitions whose tail reaches its
//     cut never become valid.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

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

// The streams' share of the capacity: capacity / num_envs each, the remainder spread over the first.
inline std::vector<EnvStream> split_streams(int64_t capacity, int64_t num_envs) {
    std::vector<EnvStream> envs(static_cast<size_t>(num_envs));
    int64_t offset = 0;
    for (int64_t e = 0; e < num_envs; ++e) {
        envs[e].offset = offset;
        envs[e].cap = capacity / num_envs + (e < capacity % num_envs ? 1 : 0);
        offset += envs[e].cap;
    }
    return envs;
}

struct Rules {
    const uint8_t* flags;  // per slot: TransitionFlags
    const uint8_t* epos;   // per slot: position in its episode, saturating at 255
    int64_t stack, n_step;

    // Transition t of s, with frames before `oldest` gone (the store asks about oldest + 1 too).
    bool valid(const EnvStream& s, int64_t t, int64_t oldest) const {
        if (t < oldest || t + 1 >= s.written) return false;
        const int64_t sl = s.slot(t);
        if (!(flags[sl] & kHasTransition)) return false;
        if (t - std::min<int64_t>(epos[sl], stack - 1) < oldest) return false;
        return tail(s, t) > 0;
    }

    // k of transition t (its steps to bootstrap from), 0 while its tail is not recorded yet (or
    // never will be: an abandoned episode). t itself must have a transition.
    int tail(const EnvStream& s, int64_t t) const {
        for (int k = 1;; ++k) {
            if (flags[s.slot(t + k - 1)] & (kTerminated | kTruncated) || k == n_step) return k;
            const int64_t u = t + k;  // the next transition of the tail
            if (u + 1 >= s.written || !(flags[s.slot(u)] & kHasTransition)) return 0;
        }
    }
};

}  // namespace fastdqn
