// pybind11 module fastdqn._cuda: thin, pointer-level entry points. fastdqn/cuda.py validates
// torch tensors (dtype, device, shape, contiguity) and passes data_ptr() values here; this file
// only checks what it can see (sizes, enums) and turns CUDA error strings into exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "area.cuh"
#include "launch.hpp"

namespace py = pybind11;

namespace {

int layout_code(const std::string& layout) {
  if (layout == "crop") return fdq::kLayoutCrop;
  if (layout == "full") return fdq::kLayoutFull;
  throw py::value_error("layout must be 'crop' or 'full', got '" + layout + "'");
}

void check_height(int h, int layout) {
  fdq::PreParams p;  // same heights as the C++ kernel, whose numbers this one must reproduce
  if ((h != 210 && h != 250) || !fdq::make_params(h, layout, &p))
    throw py::value_error("frame height " + std::to_string(h) + " is not supported (expected 210 or 250)");
}

void raise_if(const char* err, const char* what) {
  if (err != nullptr) throw std::runtime_error(std::string(what) + ": " + err);
}

template <class T>
using CArray = py::array_t<T, py::array::c_style>;  // no forcecast: reject rather than copy

CArray<uint8_t> emulate_preprocess(CArray<uint8_t> frames, py::object prev, const std::string& layout,
                                   bool vectorized) {
  const int code = layout_code(layout);
  if (frames.ndim() != 4 || frames.shape(2) != fdq::kW || frames.shape(3) != 3)
    throw py::value_error("frames must have shape [N, H, 160, 3]");
  const int64_t n = frames.shape(0);
  const int h = static_cast<int>(frames.shape(1));
  check_height(h, code);
  const uint8_t* pv = nullptr;
  CArray<uint8_t> prev_arr;
  if (!prev.is_none()) {
    prev_arr = prev.cast<CArray<uint8_t>>();
    for (int d = 0; d < 4; ++d)
      if (prev_arr.ndim() != 4 || prev_arr.shape(d) != frames.shape(d))
        throw py::value_error("prev must have the shape of frames");
    pv = prev_arr.data();
  }
  CArray<uint8_t> out({n, int64_t{fdq::kOut}, int64_t{fdq::kOut}});
  const uint8_t* f = frames.data();
  uint8_t* o = out.mutable_data();
  const char* err;
  {
    py::gil_scoped_release nogil;
    err = fdq::emulate_preprocess(f, pv, o, n, h, code, vectorized);
  }
  raise_if(err, "emulate_preprocess");
  return out;
}

CArray<uint8_t> emulate_gather(CArray<uint8_t> storage, CArray<int64_t> index, bool vectorized) {
  if (storage.ndim() != 3 || storage.shape(1) != fdq::kOut || storage.shape(2) != fdq::kOut)
    throw py::value_error("storage must have shape [S, 84, 84]");
  std::vector<py::ssize_t> shape(index.shape(), index.shape() + index.ndim());
  shape.push_back(fdq::kOut);
  shape.push_back(fdq::kOut);
  CArray<uint8_t> out(shape);
  const int64_t count = index.size();
  const int64_t frames = storage.shape(0);
  const uint8_t* s = storage.data();
  const int64_t* idx = index.data();
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    fdq::emulate_gather(s, frames, idx, count, o, vectorized);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastdqn CUDA kernels (pointer-level; use fastdqn.cuda for the torch API)";

  m.def(
      "preprocess",
      [](uintptr_t frames, uintptr_t prev, uintptr_t out, int64_t n, int h, const std::string& layout,
         int device, uintptr_t stream, uintptr_t out_index, int64_t out_frames) {
        const int code = layout_code(layout);
        check_height(h, code);
        if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
        if (out_index == 0) out_frames = n;
        const char* err;
        {
          py::gil_scoped_release nogil;
          err = fdq::launch_preprocess(
              reinterpret_cast<const uint8_t*>(frames), reinterpret_cast<const uint8_t*>(prev),
              reinterpret_cast<uint8_t*>(out), reinterpret_cast<const int64_t*>(out_index),
              out_frames, n, h, code, device, stream);
        }
        raise_if(err, "fastdqn._cuda.preprocess");
      },
      py::arg("frames"), py::arg("prev"), py::arg("out"), py::arg("n"), py::arg("h"),
      py::arg("layout"), py::arg("device"), py::arg("stream"), py::arg("out_index") = 0,
      py::arg("out_frames") = 0,
      "Launch the preprocessing kernel on raw device pointers (prev/out_index 0 = none).");

  m.def(
      "gather_windows",
      [](uintptr_t storage, int64_t num_frames, uintptr_t index, int64_t count, uintptr_t out,
         int device, uintptr_t stream) {
        if (num_frames < 0 || count < 0) throw py::value_error("num_frames and count must be >= 0");
        const char* err;
        {
          py::gil_scoped_release nogil;
          err = fdq::launch_gather(reinterpret_cast<const uint8_t*>(storage), num_frames,
                                   reinterpret_cast<const int64_t*>(index), count,
                                   reinterpret_cast<uint8_t*>(out), device, stream);
        }
        raise_if(err, "fastdqn._cuda.gather_windows");
      },
      py::arg("storage"), py::arg("num_frames"), py::arg("index"), py::arg("count"), py::arg("out"),
      py::arg("device"), py::arg("stream"),
      "Launch the window gather on raw device pointers (index -1 = zero frame).");

  m.def("device_count", [] {
    return fdq::device_count(nullptr);
  }, "CUDA devices visible to this module's runtime (0 without a driver).");
  m.def("device_error", [] {
    const char* err = nullptr;
    fdq::device_count(&err);
    return err == nullptr ? std::string() : std::string(err);
  }, "Why device_count() is 0, or '' when devices are visible.");
  m.def("runtime_version", &fdq::runtime_version, "CUDA runtime version this module links.");
  m.def("emulate_preprocess", &emulate_preprocess, py::arg("frames"), py::arg("prev") = py::none(),
        py::arg("layout") = "crop", py::arg("vectorized") = true,
        "Host emulation of the kernel's phases (tests without a GPU).");
  m.def("emulate_gather", &emulate_gather, py::arg("storage"), py::arg("index"),
        py::arg("vectorized") = true, "Host emulation of gather_windows (tests without a GPU).");
  m.attr("rows_per_block") = fdq::kRowsPerBlock;
}
