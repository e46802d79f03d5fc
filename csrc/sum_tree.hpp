// A sum tree and a min tree over n leaves (proportional prioritized replay, Schaul et al. 2016):
// setting a leaf, the total, the smallest non-zero leaf and finding a prefix sum cost O(log n).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace fastdqn {

class SumMinTree {
public:
    SumMinTree() = default;  // no leaves: a uniform store keeps none
    explicit SumMinTree(int64_t n) {
        while (leaves_ < n) leaves_ *= 2;
        sum_.assign(2 * static_cast<size_t>(leaves_), 0.0);
        min_.assign(2 * static_cast<size_t>(leaves_), kInf);
    }

    double total() const { return sum_[1]; }
    double min() const { return min_[1]; }  // +inf when every leaf is 0
    double leaf(int64_t i) const { return sum_[leaves_ + i]; }
    size_t nbytes() const { return (sum_.capacity() + min_.capacity()) * sizeof(double); }
    void clear() {
        std::fill(sum_.begin(), sum_.end(), 0.0);
        std::fill(min_.begin(), min_.end(), kInf);
    }

    // Leaf i to p >= 0 (0: never drawn; the min tree then holds +inf).
    void set(int64_t i, double p) {
        i += leaves_;
        sum_[i] = p;
        min_[i] = p > 0.0 ? p : kInf;
        for (i /= 2; i >= 1; i /= 2) {
            sum_[i] = sum_[2 * i] + sum_[2 * i + 1];
            min_[i] = std::min(min_[2 * i], min_[2 * i + 1]);
        }
    }

    // The leaf whose prefix range holds u (0 <= u < total()), never a zero leaf.
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

private:
    static constexpr double kInf = std::numeric_limits<double>::infinity();
    int64_t leaves_ = 1;        // n rounded up to a power of two
    std::vector<double> sum_;   // [2 * leaves_]: node i sums nodes 2i and 2i+1; leaf i is node leaves_ + i
    std::vector<double> min_;   // the same shape, minimum of the non-zero leaves (+inf if none)
};

}  // namespace fastdqn
