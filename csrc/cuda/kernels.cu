// CUDA kernels: fused max-pool + luma + area resize, and the replay window gather.
#include <cuda_runtime.h>

#include "area.cuh"
#include "launch.hpp"

namespace fdq {
namespace {

constexpr int kPreThreads = 128;
constexpr int kGatherThreads = 256;

// One block per (frame, group of kRowsPerBlock output rows): stage the input rows the group
// reads in shared memory with 16-byte coalesced loads (max-pooled on the way), resize columns,
// then rows. Each input byte is read from global memory about once.
template <bool kVec>
__global__ void __launch_bounds__(kPreThreads)
preprocess_kernel(const uint8_t* __restrict__ frames, const uint8_t* __restrict__ prev,
                  uint8_t* __restrict__ out, const int64_t* __restrict__ out_index,
                  int64_t out_frames, PreParams p) {
  __shared__ alignas(16) uint8_t rows[kMaxSpan * kRowBytes];
  __shared__ uint32_t hsum[kMaxSpan * kOut];
  const int64_t n = blockIdx.x / kBlocksPerFrame;
  const BlockRows br = block_rows(p, static_cast<int>(blockIdx.x % kBlocksPerFrame));
  const int64_t dst = out_index != nullptr ? out_index[n] : n;
  if (dst < 0 || dst >= out_frames) return;  // whole block exits: no barrier is left waiting
  const int nrows = br.i_hi - br.i_lo + 1;
  const int64_t in_off = (n * p.h + br.i_lo) * kRowBytes;
  stage_rows<kVec>(frames + in_off, prev != nullptr ? prev + in_off : nullptr, rows,
                   nrows * kRowBytes, threadIdx.x, blockDim.x);
  __syncthreads();
  resize_columns(rows, hsum, nrows, p.rx, threadIdx.x, blockDim.x);
  __syncthreads();
  resize_rows(hsum, out + dst * kOutPix, p, br, threadIdx.x, blockDim.x);
}

// Grid-stride copy of 16-byte units (441 per frame): every thread has independent loads in
// flight and the output is written fully coalesced.
template <bool kVec>
__global__ void __launch_bounds__(kGatherThreads)
gather_kernel(const uint8_t* __restrict__ storage, int64_t num_frames,
              const int64_t* __restrict__ index, int64_t count, uint8_t* __restrict__ out) {
  constexpr int kUnits = kVec ? kOutPix / 16 : kOutPix;
  const int64_t total = count * kUnits;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t f = t / kUnits;
    gather_unit<kVec>(storage, num_frames, index, out, f, static_cast<int>(t - f * kUnits));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

const char* check(cudaError_t e) { return e == cudaSuccess ? nullptr : cudaGetErrorString(e); }

}  // namespace

const char* launch_preprocess(const uint8_t* frames, const uint8_t* prev, uint8_t* out,
                              const int64_t* out_index, int64_t out_frames, int64_t n, int h,
                              int layout, int device, uintptr_t stream) {
  PreParams p;
  if (!make_params(h, layout, &p)) return "unsupported frame height or layout";
  if (n <= 0) return nullptr;
  if (n > (int64_t{1} << 31) / kBlocksPerFrame - 1) return "too many frames for one launch";
  // This module links its own (static) runtime, so select the tensor's device explicitly.
  if (const char* e = check(cudaSetDevice(device))) return e;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(n * kBlocksPerFrame));
  if (aligned16(frames) && (prev == nullptr || aligned16(prev)))
    preprocess_kernel<true><<<grid, kPreThreads, 0, s>>>(frames, prev, out, out_index,
                                                         out_frames, p);
  else
    preprocess_kernel<false><<<grid, kPreThreads, 0, s>>>(frames, prev, out, out_index,
                                                          out_frames, p);
  return check(cudaGetLastError());
}

const char* launch_gather(const uint8_t* storage, int64_t num_frames, const int64_t* index,
                          int64_t count, uint8_t* out, int device, uintptr_t stream) {
  if (count <= 0) return nullptr;
  if (const char* e = check(cudaSetDevice(device))) return e;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  const bool vec = aligned16(storage) && aligned16(out);
  const int64_t units = count * (vec ? kOutPix / 16 : kOutPix);
  // Enough blocks to fill a large GPU several times over; the grid-stride loop covers the rest.
  const int64_t want = (units + kGatherThreads - 1) / kGatherThreads;
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? want : 4096);
  if (vec)
    gather_kernel<true><<<blocks, kGatherThreads, 0, s>>>(storage, num_frames, index, count, out);
  else
    gather_kernel<false><<<blocks, kGatherThreads, 0, s>>>(storage, num_frames, index, count, out);
  return check(cudaGetLastError());
}

int device_count(const char** error) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    // No driver or no device is a normal state for this package, not an error to keep around.
    cudaGetLastError();
    if (error != nullptr) *error = cudaGetErrorString(e);
    return 0;
  }
  if (error != nullptr) *error = nullptr;
  return n;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace fdq
