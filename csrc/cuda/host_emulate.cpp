// Serial host run of the CUDA kernels' phases (area.cuh): every block, one "thread" each.
// It exists so the kernels' index and weight math is tested on machines without a GPU; it is
// not a fast path (the C++ _core module is the CPU kernel).
#include <cstdint>
#include <vector>

#include "area.cuh"
#include "launch.hpp"

namespace fdq {

const char* emulate_preprocess(const uint8_t* frames, const uint8_t* prev, uint8_t* out,
                               int64_t n, int h, int layout, bool vectorized) {
  PreParams p;
  if (!make_params(h, layout, &p)) return "unsupported frame height or layout";
  // Staging buffers sized and aligned like the kernel's shared memory.
  std::vector<Vec16> rows(kMaxSpan * kRowBytes / 16);
  std::vector<uint32_t> hsum(kMaxSpan * kOut);
  auto* staged = reinterpret_cast<uint8_t*>(rows.data());
  for (int64_t f = 0; f < n; ++f) {
    for (int blk = 0; blk < kBlocksPerFrame; ++blk) {
      const BlockRows br = block_rows(p, blk);
      const int nrows = br.i_hi - br.i_lo + 1;
      const int64_t off = (f * h + br.i_lo) * kRowBytes;
      const uint8_t* pv = prev != nullptr ? prev + off : nullptr;
      if (vectorized)
        stage_rows<true>(frames + off, pv, staged, nrows * kRowBytes, 0, 1);
      else
        stage_rows<false>(frames + off, pv, staged, nrows * kRowBytes, 0, 1);
      resize_columns(staged, hsum.data(), nrows, p.rx, 0, 1);
      resize_rows(hsum.data(), out + f * kOutPix, p, br, 0, 1);
    }
  }
  return nullptr;
}

void emulate_gather(const uint8_t* storage, int64_t num_frames, const int64_t* index,
                    int64_t count, uint8_t* out, bool vectorized) {
  for (int64_t f = 0; f < count; ++f) {
    if (vectorized)
      for (int u = 0; u < kOutPix / 16; ++u) gather_unit<true>(storage, num_frames, index, out, f, u);
    else
      for (int u = 0; u < kOutPix; ++u) gather_unit<false>(storage, num_frames, index, out, f, u);
  }
}

}  // namespace fdq
