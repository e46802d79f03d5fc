// Area-resize geometry and the per-block phases of the CUDA preprocessing kernel.
//
// Everything here is __host__ __device__ on purpose: host_emulate.cpp runs the very same phases
// serially (one "thread", every block) so the index and weight math is tested on machines
// without a GPU. The kernel in kernels.cu only adds threads, shared memory and barriers.
//
// Arithmetic (identical to the C++ kernel in csrc/, integer and deterministic):
// out = floor(sum_ij wy*wx*(299R + 587G + 114B) / (1000 * by * bx)), where an axis of in_len
// cells resized to out_len cells has g = gcd(in_len, out_len), input cell weight a = out_len/g
// and output cell width b = in_len/g; the tap weight is the overlap of [i*a, (i+1)*a) with
// [o*b, (o+1)*b). Worst case sum 255000*125*40 < 2^32, so uint32 never overflows.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define FDQ_HD __host__ __device__ __forceinline__
#else
#define FDQ_HD inline
#endif

namespace fdq {

constexpr int kW = 160;                  // Atari frame width
constexpr int kRowBytes = kW * 3;        // 480: a multiple of 16, so rows keep 16-byte alignment
constexpr int kOut = 84;                 // output side
constexpr int kOutPix = kOut * kOut;     // 7056 bytes per output frame, also a multiple of 16
constexpr int kRowsPerBlock = 6;         // output rows per block: 14 blocks per frame keeps the
                                         // grid wide enough for small env counts
constexpr int kBlocksPerFrame = (kOut + kRowsPerBlock - 1) / kRowsPerBlock;
// Input rows one block may need: kRowsPerBlock * (in/out) + 2 partial rows, for in/out <= 3
// (250 -> 84 is 2.98). make_params() rejects geometries that would exceed it.
constexpr int kMaxSpan = 3 * kRowsPerBlock + 2;
constexpr int kLayoutCrop = 0, kLayoutFull = 1;

struct Axis {
  int a;  // weight of one input cell, in units
  int b;  // width of one output cell, in units (= the sum of its taps)
};

FDQ_HD int gcd_int(int x, int y) {
  while (y != 0) { int t = x % y; x = y; y = t; }
  return x;
}
FDQ_HD Axis make_axis(int in_len, int out_len) {
  const int g = gcd_int(in_len, out_len);
  return Axis{out_len / g, in_len / g};
}
FDQ_HD int first_tap(Axis ax, int o) { return o * ax.b / ax.a; }
FDQ_HD int last_tap(Axis ax, int o) { return ((o + 1) * ax.b - 1) / ax.a; }
FDQ_HD uint32_t tap_weight(Axis ax, int o, int i) {
  const int lo = i * ax.a > o * ax.b ? i * ax.a : o * ax.b;
  const int hi = (i + 1) * ax.a < (o + 1) * ax.b ? (i + 1) * ax.a : (o + 1) * ax.b;
  return static_cast<uint32_t>(hi - lo);
}

struct PreParams {
  int h;              // input rows (210 or 250 for Atari)
  int row_off;        // first kept row of the resized image: 18 (crop) or 0 (full)
  Axis ry, rx;        // row and column axes
  uint32_t divisor;   // 1000 * ry.b * rx.b
};

// The output rows [y0, y1) of block blk and the input rows [i_lo, i_hi] they read.
struct BlockRows { int y0, y1, i_lo, i_hi; };
FDQ_HD BlockRows block_rows(const PreParams& p, int blk) {
  BlockRows r;
  r.y0 = blk * kRowsPerBlock;
  r.y1 = r.y0 + kRowsPerBlock < kOut ? r.y0 + kRowsPerBlock : kOut;
  r.i_lo = first_tap(p.ry, p.row_off + r.y0);
  r.i_hi = last_tap(p.ry, p.row_off + r.y1 - 1);
  return r;
}

// Fills *p for an input of h rows; false when the layout is unknown or a block would need more
// than kMaxSpan staged rows (the shared-memory budget).
inline bool make_params(int h, int layout, PreParams* p) {
  if (h <= 0 || (layout != kLayoutCrop && layout != kLayoutFull)) return false;
  p->h = h;
  p->row_off = layout == kLayoutCrop ? 18 : 0;
  p->ry = make_axis(h, layout == kLayoutCrop ? 110 : kOut);
  p->rx = make_axis(kW, kOut);
  p->divisor = 1000u * static_cast<uint32_t>(p->ry.b) * static_cast<uint32_t>(p->rx.b);
  if (static_cast<uint64_t>(255000) * p->ry.b * p->rx.b > 0xffffffffull) return false;
  for (int blk = 0; blk < kBlocksPerFrame; ++blk) {
    const BlockRows r = block_rows(*p, blk);
    if (r.i_hi - r.i_lo + 1 > kMaxSpan || r.i_hi >= h) return false;
  }
  return true;
}

// 16 bytes moved as one unit: LDG.128 on the device, memcpy on the host.
struct alignas(16) Vec16 { uint32_t w[4]; };

FDQ_HD Vec16 load16(const uint8_t* p) {
  Vec16 v;
#ifdef __CUDA_ARCH__
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  v.w[0] = u.x; v.w[1] = u.y; v.w[2] = u.z; v.w[3] = u.w;
#else
  std::memcpy(&v, p, 16);
#endif
  return v;
}
FDQ_HD void store16(uint8_t* p, const Vec16& v) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<uint4*>(p) = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
#else
  std::memcpy(p, &v, 16);
#endif
}
// Per-byte unsigned max of two packed words: the MaxAndSkip max-pool on 4 channels at a time.
FDQ_HD uint32_t max_bytes4(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  return __vmaxu4(a, b);
#else
  uint32_t r = 0;
  for (int k = 0; k < 32; k += 8) {
    const uint32_t x = (a >> k) & 0xffu, y = (b >> k) & 0xffu;
    r |= (x > y ? x : y) << k;
  }
  return r;
#endif
}

// Phase 1: copy nbytes of consecutive input rows (max-pooled with prev when given) into staging.
// kVec needs src, prev and dst 16-byte aligned; nbytes is always a multiple of 480 (and of 16).
template <bool kVec>
FDQ_HD void stage_rows(const uint8_t* src, const uint8_t* prev, uint8_t* dst, int nbytes,
                       int tid, int nthreads) {
  if (kVec) {
    for (int k = tid; k < nbytes / 16; k += nthreads) {
      Vec16 v = load16(src + 16 * k);
      if (prev != nullptr) {
        const Vec16 q = load16(prev + 16 * k);
        for (int c = 0; c < 4; ++c) v.w[c] = max_bytes4(v.w[c], q.w[c]);
      }
      store16(dst + 16 * k, v);
    }
  } else {
    for (int k = tid; k < nbytes; k += nthreads) {
      uint8_t v = src[k];
      if (prev != nullptr && prev[k] > v) v = prev[k];
      dst[k] = v;
    }
  }
}

// Phase 2: column resize of every staged row into 84 weighted luma sums (luma scaled by 1000).
FDQ_HD void resize_columns(const uint8_t* rows, uint32_t* hsum, int nrows, Axis rx, int tid,
                           int nthreads) {
  for (int k = tid; k < nrows * kOut; k += nthreads) {
    const int r = k / kOut, x = k - r * kOut;
    const uint8_t* row = rows + r * kRowBytes;
    uint32_t s = 0;
    for (int j = first_tap(rx, x); j <= last_tap(rx, x); ++j) {
      const uint8_t* px = row + 3 * j;
      s += tap_weight(rx, x, j) * (299u * px[0] + 587u * px[1] + 114u * px[2]);
    }
    hsum[k] = s;
  }
}

// Phase 3: row resize of the column sums and the single floor division; writes rows [y0, y1).
FDQ_HD void resize_rows(const uint32_t* hsum, uint8_t* out, const PreParams& p, BlockRows br,
                        int tid, int nthreads) {
  for (int k = tid; k < (br.y1 - br.y0) * kOut; k += nthreads) {
    const int yl = k / kOut, x = k - yl * kOut;
    const int o = p.row_off + br.y0 + yl;
    uint32_t s = 0;
    for (int i = first_tap(p.ry, o); i <= last_tap(p.ry, o); ++i)
      s += tap_weight(p.ry, o, i) * hsum[(i - br.i_lo) * kOut + x];
    out[(br.y0 + yl) * kOut + x] = static_cast<uint8_t>(s / p.divisor);
  }
}

// One 16-byte (kVec) or 1-byte unit of gather_windows: frame f of the output, unit u within it.
// Indices outside [0, num_frames) give zeros: -1 is the zero frame by contract and anything else
// was rejected by the caller's check; the kernel stays memory-safe either way.
template <bool kVec>
FDQ_HD void gather_unit(const uint8_t* storage, int64_t num_frames, const int64_t* index,
                        uint8_t* out, int64_t f, int u) {
  const int64_t idx = index[f];
  const bool valid = idx >= 0 && idx < num_frames;
  if (kVec) {
    Vec16 v = {{0u, 0u, 0u, 0u}};
    if (valid) v = load16(storage + idx * kOutPix + 16 * u);
    store16(out + f * kOutPix + 16 * u, v);
  } else {
    out[f * kOutPix + u] = valid ? storage[idx * kOutPix + u] : uint8_t{0};
  }
}

}  // namespace fdq
