// Host entry points of the CUDA module, free of CUDA and pybind11 headers so bindings.cpp builds
// with the plain C++ compiler. Pointers are device addresses taken from torch tensors; `stream`
// is a cudaStream_t passed as an integer (0 = legacy default stream). Each function returns
// nullptr on success or a static error string; launches are asynchronous on `stream`.
#pragma once
#include <cstdint>

namespace fdq {

// frames/prev: uint8 [n, h, 160, 3] (prev may be null); out: uint8 [out_frames, 84, 84].
// Frame k is written to out[out_index[k]] when out_index (int64 [n], device) is given, else
// to out[k]; out_index entries outside [0, out_frames) are skipped.
const char* launch_preprocess(const uint8_t* frames, const uint8_t* prev, uint8_t* out,
                              const int64_t* out_index, int64_t out_frames, int64_t n, int h,
                              int layout, int device, uintptr_t stream);

// storage: uint8 [num_frames, 84, 84]; index: int64 [count] (-1 = zero frame);
// out: uint8 [count, 84, 84].
const char* launch_gather(const uint8_t* storage, int64_t num_frames, const int64_t* index,
                          int64_t count, uint8_t* out, int device, uintptr_t stream);

// Number of CUDA devices this module's runtime sees (0 without a driver); message on failure.
int device_count(const char** error);
int runtime_version();

// Host emulation of the preprocessing kernel (same phases, serial): for tests without a GPU.
const char* emulate_preprocess(const uint8_t* frames, const uint8_t* prev, uint8_t* out,
                               int64_t n, int h, int layout, bool vectorized);
void emulate_gather(const uint8_t* storage, int64_t num_frames, const int64_t* index,
                    int64_t count, uint8_t* out, bool vectorized);

}  // namespace fdq
