// Integer INTER_AREA taps: the exact overlap of each input cell with each output cell.
//
// Resizing an axis of in_len cells to out_len cells: with g = gcd(in_len, out_len) every input
// cell is a = out_len / g units long and every output cell covers b = in_len / g units, so all
// overlaps are whole numbers and each output's taps sum to b. This is the area model OpenCV's
// INTER_AREA uses for shrinking, in exact arithmetic instead of float.
#pragma once

#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace fastdqn {

struct AreaTaps {
    int in_len = 0;
    int out_len = 0;
    int units = 0;       // b: sum of the taps of every output cell
    int max_taps = 0;    // taps per output, padded to the widest
    std::vector<int32_t> first;    // [out_len] first input cell of each output
    std::vector<uint16_t> weight;  // [out_len * max_taps], zero-padded

    AreaTaps() = default;
    AreaTaps(int in, int out) : in_len(in), out_len(out) {
        if (in <= 0 || out <= 0 || out > in) throw std::invalid_argument("area taps: need 0 < out <= in");
        const int g = std::gcd(in, out);
        const int a = out / g;
        const int b = in / g;
        units = b;
        max_taps = (b + a - 1) / a + 1;
        first.resize(out);
        weight.assign(static_cast<size_t>(out) * max_taps, 0);
        for (int o = 0; o < out; ++o) {
            const int lo = o * b, hi = (o + 1) * b;
            first[o] = lo / a;
            for (int i = lo / a, k = 0; i * a < hi; ++i, ++k) {
                const int w = std::min(hi, (i + 1) * a) - std::max(lo, i * a);
                weight[static_cast<size_t>(o) * max_taps + k] = static_cast<uint16_t>(w);
            }
        }
    }
    const uint16_t* taps(int o) const { return weight.data() + static_cast<size_t>(o) * max_taps; }
};

}  // namespace fastdqn
