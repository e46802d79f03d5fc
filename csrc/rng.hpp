// The replay's sampling RNG: xoshiro256** (fast, small, and its state can be saved for exact resumes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fastdqn {

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
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // uniform in [0, 1)

    std::vector<uint64_t> state() const { return {s_, s_ + 4}; }
    // All-zero is xoshiro's fixed point (below() would return 0 forever): a caller checks
    // usable_state() first; the store's state check does.
    static bool usable_state(const uint64_t* s) { return (s[0] | s[1] | s[2] | s[3]) != 0; }
    void set_state(const uint64_t* s) { std::copy(s, s + 4, s_); }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

}  // namespace fastdqn
