// Fused Atari frame preprocessing: max-pool of two frames, (luma,) INTER_AREA resize and crop in
// one pass over the input, uint8 out, integer arithmetic only. Two inputs:
//
// RGB screens (max, then luma: the book chapter's and Nature DQN's order):
//   out[y][x] = floor(area average of 0.299 R + 0.587 G + 0.114 B), computed exactly:
//   sum_{i,j} wy[i] wx[j] (299 R + 587 G + 114 B) / (1000 * units_y * units_x)
//   The book chapter's float pipeline (float luma, cv2.resize INTER_AREA in float, truncating
//   cast) computes the same value up to float rounding, so it differs by at most one grey level
//   where that value sits next to an integer.
// ALE's grey screens (luma per palette colour, then max: gymnasium's AtariPreprocessing and
// Dopamine's order):
//   out[y][x] = the area average of the grey levels rounded half up, computed exactly, as
//   cv2.resize INTER_AREA of a uint8 image rounds it (up to its float rounding at halves).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "area_taps.hpp"

namespace fastdqn {

constexpr int kOutSide = 84;
constexpr int kRawWidth = 160;
constexpr int kCropRows = 110;   // the book chapter's ProcessFrame84 resizes to 84x110 ...
constexpr int kCropFirst = 18;   // ... and keep rows 18..101

enum class Layout { Crop, Full };

// 16-byte aligned storage for SIMD loads.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
    bool operator==(const AlignedAllocator&) const { return true; }
    bool operator!=(const AlignedAllocator&) const { return false; }
};

class FramePreprocessor {
public:
    // channels: 3 for RGB screens [raw_height, 160, 3], 1 for grey screens [raw_height, 160].
    FramePreprocessor(int raw_height, Layout layout, int channels = 3)
        : raw_height_(raw_height), layout_(layout), channels_(channels),
          rows_(raw_height, layout == Layout::Crop ? kCropRows : kOutSide),
          cols_(kRawWidth, kOutSide) {
        if (raw_height != 210 && raw_height != 250)
            throw std::invalid_argument("raw frame height must be 210 or 250, got " + std::to_string(raw_height));
        if (channels != 1 && channels != 3)
            throw std::invalid_argument("channels must be 1 (grey) or 3 (RGB), got " + std::to_string(channels));
        first_row_ = layout == Layout::Crop ? kCropFirst : 0;
        const uint32_t units = static_cast<uint32_t>(rows_.units) * static_cast<uint32_t>(cols_.units);
        // RGB: floor(total / (1000 units)); largest total 255 * 1000 * units = 1.275e9 (250 rows,
        // full layout): fits int32. Grey: taps doubled, so floor((2 sum + units) / (2 units)) is the
        // average rounded half up.
        divisor_ = channels == 3 ? 1000u * units : 2u * units;
        bias_ = channels == 3 ? 0 : static_cast<int32_t>(units);
        inv_divisor_ = 1.0 / static_cast<double>(divisor_);
        build_horizontal();
    }

    int raw_height() const { return raw_height_; }
    Layout layout() const { return layout_; }
    int channels() const { return channels_; }
    size_t raw_bytes() const { return static_cast<size_t>(raw_height_) * kRawWidth * channels_; }

    // frame, prev: [raw_height, 160(, 3)] uint8 (prev may be null); out: [84, 84] uint8.
    void operator()(const uint8_t* frame, const uint8_t* prev, uint8_t* out) const {
        if (channels_ == 1) {
            if (prev) run<true, 1>(frame, prev, out);
            else run<false, 1>(frame, frame, out);
        } else {
            if (prev) run<true, 3>(frame, prev, out);
            else run<false, 3>(frame, frame, out);
        }
    }

private:
    template <bool kMaxPool, int kChannels>
    void run(const uint8_t* __restrict frame, const uint8_t* __restrict prev, uint8_t* __restrict out) const {
        constexpr int kRowBytes = kRawWidth * kChannels;
        // Vertical taps sum to at most 125 * 255 < 2^15: int16 lanes, and the luma-weighted
        // horizontal taps fit int16 too, so the horizontal dot product is a multiply-add of int16 pairs.
        alignas(64) int16_t acc[kRowBytes + kHorizontalLanes];
        std::fill(acc + kRowBytes, acc + kRowBytes + kHorizontalLanes, int16_t{0});  // lanes past the row
        for (int y = 0; y < kOutSide; ++y) {
            const int oy = y + first_row_;
            const uint16_t* wy = rows_.taps(oy);
            int taps = 0;
            while (taps < rows_.max_taps && wy[taps]) ++taps;
            const size_t off = static_cast<size_t>(rows_.first[oy]) * kRowBytes;
            switch (taps) {  // fixed tap counts keep acc in registers across the taps
                case 1: vertical<kMaxPool, 1, kRowBytes>(frame + off, prev + off, wy, acc); break;
                case 2: vertical<kMaxPool, 2, kRowBytes>(frame + off, prev + off, wy, acc); break;
                case 3: vertical<kMaxPool, 3, kRowBytes>(frame + off, prev + off, wy, acc); break;
                case 4: vertical<kMaxPool, 4, kRowBytes>(frame + off, prev + off, wy, acc); break;
                default: vertical<kMaxPool, 5, kRowBytes>(frame + off, prev + off, wy, acc); break;
            }
            horizontal(acc, out + static_cast<size_t>(y) * kOutSide);
        }
    }

    // acc[c] = sum_k w[k] * max(frame, prev)[row k][c] over the byte columns of one output row.
    template <bool kMaxPool, int kTaps, int kRowBytes>
    static void vertical(const uint8_t* __restrict frame, const uint8_t* __restrict prev, const uint16_t* w,
                         int16_t* __restrict acc) {
        int16_t wk[kTaps];
        for (int k = 0; k < kTaps; ++k) wk[k] = static_cast<int16_t>(w[k]);
        for (int c = 0; c < kRowBytes; ++c) {
            int16_t sum = 0;
            for (int k = 0; k < kTaps; ++k) {
                const uint8_t a = frame[k * kRowBytes + c];
                const int16_t v = kMaxPool ? std::max(a, prev[k * kRowBytes + c]) : a;
                sum = static_cast<int16_t>(sum + wk[k] * v);
            }
            acc[c] = sum;
        }
    }

    // out[x] = floor((sum over the taps of x of weighted acc + bias) / divisor), four outputs at a time.
    // floor(total / divisor) is computed as (total + 0.5) * (1 / divisor) in double: the +0.5 keeps
    // exact multiples off the rounding edge (0.5 / divisor >> the double's relative error), so the
    // result is exact for every total below 2^31.
    void horizontal(const int16_t* acc, uint8_t* out) const {
        static_assert(kOutSide % 4 == 0, "four outputs per step");
        const int16_t* weights = horizontal_.data();
        for (int x = 0; x < kOutSide; x += 4) {
#if defined(__SSE2__)
            __m128i sums[4];
            for (int i = 0; i < 4; ++i) {
                const int16_t* a = acc + acc_offset_[x + i];
                const int16_t* wt = weights + (x + i) * kHorizontalLanes;
                sums[i] = _mm_add_epi32(
                    _mm_madd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)),
                                   _mm_load_si128(reinterpret_cast<const __m128i*>(wt))),
                    _mm_madd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 8)),
                                   _mm_load_si128(reinterpret_cast<const __m128i*>(wt + 8))));
            }
            // transpose-add: lane i of `total` is the horizontal sum of sums[i]
            const __m128i t0 = _mm_add_epi32(_mm_unpacklo_epi32(sums[0], sums[1]), _mm_unpackhi_epi32(sums[0], sums[1]));
            const __m128i t1 = _mm_add_epi32(_mm_unpacklo_epi32(sums[2], sums[3]), _mm_unpackhi_epi32(sums[2], sums[3]));
            const __m128i total = _mm_add_epi32(_mm_add_epi32(_mm_unpacklo_epi64(t0, t1), _mm_unpackhi_epi64(t0, t1)),
                                                _mm_set1_epi32(bias_));
            const __m128d half = _mm_set1_pd(0.5), inv = _mm_set1_pd(inv_divisor_);
            const __m128i q01 = _mm_cvttpd_epi32(_mm_mul_pd(_mm_add_pd(_mm_cvtepi32_pd(total), half), inv));
            const __m128i q23 = _mm_cvttpd_epi32(
                _mm_mul_pd(_mm_add_pd(_mm_cvtepi32_pd(_mm_unpackhi_epi64(total, total)), half), inv));
            const __m128i q = _mm_unpacklo_epi64(q01, q23);
            const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(q, q), _mm_setzero_si128());
            const int32_t packed = _mm_cvtsi128_si32(bytes);
            std::memcpy(out + x, &packed, 4);
#else
            for (int i = 0; i < 4; ++i) {
                const int16_t* a = acc + acc_offset_[x + i];
                const int16_t* wt = weights + (x + i) * kHorizontalLanes;
                int32_t t = bias_;
                for (int m = 0; m < kHorizontalLanes; ++m) t += int32_t{a[m]} * wt[m];
                out[x + i] = static_cast<uint8_t>((static_cast<double>(t) + 0.5) * inv_divisor_);
            }
#endif
        }
    }

    // Column taps times the luma coefficients (RGB: laid out over the interleaved bytes of acc) or
    // times 2 (grey: see divisor_).
    void build_horizontal() {
        static constexpr int16_t kLuma[3] = {299, 587, 114};
        if (channels_ * cols_.max_taps > kHorizontalLanes) throw std::logic_error("too many horizontal taps");
        horizontal_.assign(static_cast<size_t>(kOutSide) * kHorizontalLanes, 0);
        for (int x = 0; x < kOutSide; ++x) acc_offset_[x] = channels_ * cols_.first[x];
        for (int x = 0; x < kOutSide; ++x)
            for (int k = 0; k < cols_.max_taps; ++k)
                for (int ch = 0; ch < channels_; ++ch)
                    horizontal_[x * kHorizontalLanes + channels_ * k + ch] =
                        static_cast<int16_t>(cols_.taps(x)[k] * (channels_ == 3 ? kLuma[ch] : 2));
    }

    static constexpr int kHorizontalLanes = 16;

    int raw_height_;
    Layout layout_;
    int channels_;
    AreaTaps rows_;
    AreaTaps cols_;
    int first_row_ = 0;
    uint32_t divisor_ = 1;
    int32_t bias_ = 0;
    double inv_divisor_ = 1.0;
    std::vector<int16_t, AlignedAllocator<int16_t>> horizontal_;
    int32_t acc_offset_[kOutSide];  // first acc lane of each output's taps
};

}  // namespace fastdqn
