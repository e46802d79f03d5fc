// The one pybind11 file: validates with the GIL held, then releases it around the C++ loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <sstream>

#include "parallel.hpp"
#include "preprocess.hpp"
#include "replay.hpp"

namespace py = pybind11;
using namespace fastdqn;

namespace {

std::string shape_str(const py::array& a) {
    std::ostringstream os;
    os << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
    os << (a.ndim() == 1 ? ",)" : ")");
    return os.str();
}

std::string shape_str(const std::vector<py::ssize_t>& s) {
    std::ostringstream os;
    os << "(";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    os << (s.size() == 1 ? ",)" : ")");
    return os.str();
}

// A C-contiguous array of `dtype` and exactly `shape`, else TypeError/ValueError naming both sides.
void require_array(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
    if (!a.dtype().equal(dtype))  // equal, not is: an unpickled array has its own dtype object
        throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(dtype)) + ", got " +
                             std::string(py::str(a.dtype())));
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": expected a C-contiguous array (np.ascontiguousarray), got strides that are not");
}

void require_u8(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape) {
    require_array(a, name, shape, py::dtype::of<uint8_t>());
}

void require_writable(const py::array& a, const char* name) {
    if (!a.writeable()) throw py::value_error(std::string(name) + ": expected a writable array, got a read-only one");
}

template <class T>
T* ptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

// 1-D array of length n converted to T; `kinds` lists the accepted numpy dtype kinds.
template <class T>
py::array_t<T> vector_arg(const py::handle& obj, const char* name, py::ssize_t n, const char* kinds) {
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(std::string(name) + ": expected an array of length " + std::to_string(n));
    const char kind = a.dtype().kind();
    if (std::string(kinds).find(kind) == std::string::npos)
        throw py::type_error(std::string(name) + ": expected dtype kind in '" + kinds + "', got " + std::string(py::str(a.dtype())));
    if (a.ndim() != 1 || a.shape(0) != n)
        throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ",), got " + shape_str(a));
    return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

const FramePreprocessor& preprocessor(int height, Layout layout, int channels) {
    static const FramePreprocessor kernels[8] = {{210, Layout::Crop, 3}, {210, Layout::Full, 3},
                                                 {250, Layout::Crop, 3}, {250, Layout::Full, 3},
                                                 {210, Layout::Crop, 1}, {210, Layout::Full, 1},
                                                 {250, Layout::Crop, 1}, {250, Layout::Full, 1}};
    if (height != 210 && height != 250)
        throw py::value_error("frames: expected height 210 or 250, got " + std::to_string(height));
    return kernels[(channels == 1 ? 4 : 0) + (height == 250 ? 2 : 0) + (layout == Layout::Full ? 1 : 0)];
}

// frames, prev: [N, H, 160, 3] uint8 RGB or [N, H, 160] uint8 grey; out: [N, 84, 84] uint8.
void preprocess_batch(py::array frames, py::object prev_obj, py::array out, const std::string& layout_name, int threads) {
    if (frames.ndim() != 4 && frames.ndim() != 3)
        throw py::value_error("frames: expected shape (N, 210, 160, 3) (RGB) or (N, 210, 160) (grey), got " +
                              shape_str(frames));
    const py::ssize_t n = frames.shape(0), h = frames.shape(1);
    std::vector<py::ssize_t> raw_shape{n, h, kRawWidth};
    if (frames.ndim() == 4) raw_shape.push_back(3);
    require_u8(frames, "frames", raw_shape);
    if (layout_name != "crop" && layout_name != "full")
        throw py::value_error("layout: expected 'crop' or 'full', got '" + layout_name + "'");
    const FramePreprocessor& kernel = preprocessor(static_cast<int>(h), layout_name == "crop" ? Layout::Crop : Layout::Full,
                                                   frames.ndim() == 4 ? 3 : 1);
    const uint8_t* prev = nullptr;
    py::array prev_arr;
    if (!prev_obj.is_none()) {
        prev_arr = py::array::ensure(prev_obj);
        if (!prev_arr) throw py::type_error("prev: expected a uint8 array or None");
        require_u8(prev_arr, "prev", raw_shape);
        prev = static_cast<const uint8_t*>(prev_arr.data());
    }
    require_u8(out, "out", {n, kOutSide, kOutSide});
    require_writable(out, "out");
    const uint8_t* src = static_cast<const uint8_t*>(frames.data());
    uint8_t* dst = ptr<uint8_t>(out);
    const size_t raw = kernel.raw_bytes();
    if (threads <= 0) threads = hardware_threads();
    py::gil_scoped_release nogil;
    parallel_for(n, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            kernel(src + i * raw, prev ? prev + i * raw : nullptr, dst + i * kOutSide * kOutSide);
    });
}

// The replay bench's baseline, not used by the replay: out[b] = frames[starts[b] : starts[b] + width]
// (width = out.shape[1]), one memcpy per window. A sample of the same windows from the same ring
// cannot be faster than this plain copy.
void copy_windows(py::array frames, py::object starts_obj, py::array out) {
    if (frames.ndim() < 1 || out.ndim() != frames.ndim() + 1)
        throw py::value_error("out: expected shape (len(starts), width, *frames.shape[1:]), got " + shape_str(out) +
                              " for frames " + shape_str(frames));
    const py::ssize_t n = out.shape(0), width = out.shape(1), ring = frames.shape(0);
    std::vector<py::ssize_t> ring_shape(frames.shape(), frames.shape() + frames.ndim());
    require_array(frames, "frames", ring_shape, frames.dtype());  // contiguity
    std::vector<py::ssize_t> shape{n, width};
    shape.insert(shape.end(), ring_shape.begin() + 1, ring_shape.end());
    require_array(out, "out", shape, frames.dtype());
    require_writable(out, "out");
    const auto starts = vector_arg<int64_t>(starts_obj, "starts", n, "iu");
    for (py::ssize_t i = 0; i < n; ++i)
        if (starts.at(i) < 0 || starts.at(i) > ring - width)
            throw py::value_error("starts: expected window starts in [0, " + std::to_string(ring - width) + "], got " +
                                  std::to_string(starts.at(i)) + " at " + std::to_string(i));
    const size_t frame = ring ? static_cast<size_t>(frames.nbytes() / ring) : 0;
    const auto* src = static_cast<const uint8_t*>(frames.data());
    auto* dst = ptr<uint8_t>(out);
    const int64_t* st = starts.data();
    py::gil_scoped_release nogil;
    for (py::ssize_t i = 0; i < n; ++i)
        std::memcpy(dst + i * width * frame, src + st[i] * frame, width * frame);
}

// ReplayStore plus what Python needs around it: the frames' numpy dtype and shape, so errors can
// name them, and the arguments' conversions. The store itself keeps frames as bytes: uint8
// pixels and float32 vectors take the same code path.
class ReplayCore {
public:
    explicit ReplayCore(const ReplayOptions& options)  // the store validates them first
        : store_(options), dtype_(store_.options().dtype),
          frame_shape_(store_.options().frame_shape.begin(), store_.options().frame_shape.end()) {}

    ReplayStore& store() { return store_; }

    int64_t start(py::object frame, int env) {
        py::array keep;
        return store_.start(env, frame_data(frame, "frame", {}, keep));
    }

    int64_t add(py::int_ action, double reward, py::object next_frame, bool terminated, bool truncated, int env) {
        int overflow = 0;
        const long long a = PyLong_AsLongLongAndOverflow(action.ptr(), &overflow);
        if (overflow) throw py::value_error(ReplayStore::action_error(std::string(py::str(action))));
        py::array keep;
        return store_.add(env, a, reward, frame_data(next_frame, "next_frame", {}, keep), terminated, truncated);
    }

    // Stream indices for a call on `k` streams: envs (in range, distinct), or None for all streams in order.
    py::array_t<int64_t> stream_indices(py::object envs_obj, py::ssize_t k, const char* what) {
        py::array_t<int64_t> envs;
        if (envs_obj.is_none()) {
            if (k != store_.num_envs())
                throw py::value_error(std::string(what) + ": without envs=, expected one per env (" +
                                      std::to_string(store_.num_envs()) + "), got " + std::to_string(k));
            envs = py::array_t<int64_t>(k);
            for (py::ssize_t i = 0; i < k; ++i) envs.mutable_at(i) = i;
            return envs;
        }
        envs = vector_arg<int64_t>(envs_obj, "envs", k, "iu");
        for (py::ssize_t i = 0; i < k; ++i) {
            // Range-check the int64 before narrowing: 2**32 + 1 must not wrap to env 1.
            if (envs.at(i) < 0 || envs.at(i) >= store_.num_envs())
                throw py::value_error("envs: expected indices in [0, " + std::to_string(store_.num_envs()) + "), got " +
                                      std::to_string(envs.at(i)));
            for (py::ssize_t j = 0; j < i; ++j)
                if (envs.at(j) == envs.at(i)) throw py::value_error("envs: expected distinct env indices, got " +
                                                                     std::to_string(envs.at(i)) + " twice");
        }
        return envs;
    }

    py::array_t<int64_t> start_many(py::object frames_obj, py::object envs_obj, py::ssize_t count) {
        const py::ssize_t k = count;
        py::array keep;
        const uint8_t* src = frame_data(frames_obj, "frames", {k}, keep);
        const py::array_t<int64_t> envs = stream_indices(envs_obj, k, "frames");
        py::array_t<int64_t> slots(k);
        for (py::ssize_t i = 0; i < k; ++i)
            slots.mutable_at(i) = store_.start(static_cast<int>(envs.at(i)), src ? src + i * store_.frame_bytes() : nullptr);
        return slots;
    }

    // One transition on each of `count` streams (envs=None: every stream, in order).
    py::array_t<int64_t> add_many(py::object actions_obj, py::object rewards_obj, py::object next_frames,
                                  py::object terminated_obj, py::object truncated_obj, py::object envs_obj,
                                  py::ssize_t count) {
        const py::ssize_t n = count;
        const py::array_t<int64_t> envs = stream_indices(envs_obj, n, "actions");
        py::array keep;
        const uint8_t* src = frame_data(next_frames, "next_frames", {n}, keep);
        auto actions = vector_arg<int64_t>(actions_obj, "actions", n, "iu");
        auto rewards = vector_arg<float>(rewards_obj, "rewards", n, "iuf");
        auto terminated = vector_arg<bool>(terminated_obj, "terminated", n, "biu");
        py::array_t<bool> truncated;
        if (!truncated_obj.is_none()) truncated = vector_arg<bool>(truncated_obj, "truncated", n, "biu");
        py::array_t<int64_t> slots(n);
        const int64_t* a = actions.data();
        const float* r = rewards.data();
        const bool* term = terminated.data();
        const bool* trunc = truncated_obj.is_none() ? nullptr : truncated.data();
        const int64_t* e = envs_obj.is_none() ? nullptr : envs.data();
        int64_t* out = slots.mutable_data();
        {
            py::gil_scoped_release nogil;  // pure C++; `keep` and the arrays above hold the data alive
            store_.add_many(a, r, src, term, trunc, out, e, static_cast<int>(n));
        }
        return slots;
    }

    // Fills caller-allocated (pinned) outputs; window_slots [B, window] int64 is returned for
    // inspection. A prioritized store also fills weights and indices (None for a uniform one).
    void sample_into(int64_t batch, py::array window_slots, py::array action, py::array reward, py::array done,
                     py::array discount, py::object out_obj, int threads, std::optional<py::array> weights,
                     std::optional<py::array> indices, double beta) {
        py::array keep;
        BatchOut o = outputs(batch, window_slots, action, reward, done, discount, out_obj, keep);
        if (weights) {
            require_dtype<float>(*weights, "weights", {batch});
            o.weights = ptr<float>(*weights);
        }
        if (indices) {
            require_dtype<int64_t>(*indices, "indices", {batch});
            o.indices = ptr<int64_t>(*indices);
        }
        if (threads <= 0) threads = hardware_threads();
        py::gil_scoped_release nogil;
        store_.sample(batch, beta, o, threads);
    }

    void update_priorities(py::object indices_obj, py::object priorities_obj) {
        auto indices = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(indices_obj);
        auto priorities = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(priorities_obj);
        if (!indices || !priorities || indices.ndim() != 1 || priorities.ndim() != 1 ||
            indices.shape(0) != priorities.shape(0))
            throw py::value_error("update_priorities: expected indices and priorities, two 1-D arrays of one length");
        const int64_t n = indices.shape(0);
        const int64_t* ix = indices.data();
        const double* p = priorities.data();
        py::gil_scoped_release nogil;
        store_.update_priorities(n, ix, p);
    }

    // One transition (stream env, absolute frame t) into outputs of batch 1, as sample_into fills them.
    void transition_into(int env, int64_t t, py::array window_slots, py::array action, py::array reward,
                         py::array done, py::array discount, py::object out_obj) {
        py::array keep;
        const BatchOut o = outputs(1, window_slots, action, reward, done, discount, out_obj, keep);
        store_.transition_at(env, t, o.window_slots, o.action, o.reward, o.done, o.discount, o.frames);
    }

    // A saved state (fastdqn/replay/state.py: the options it was saved with, its arrays by name,
    // max_priority and len) checked by the store; load=true then replaces the store's contents.
    // Here only the arrays' types: numpy arrays of the stored dtypes (made C-contiguous).
    void state(const ReplayOptions& saved, const py::dict& arrays, double max_priority, int64_t len, bool load) {
        std::vector<py::array> keep;
        SavedState st;
        st.options = saved;
        st.max_priority = max_priority;
        st.len = len;
        take(st.frames, arrays, "frames", dtype_, keep);
        take(st.actions, arrays, "actions", py::dtype::of<int32_t>(), keep);
        take(st.rewards, arrays, "rewards", py::dtype::of<float>(), keep);
        take(st.flags, arrays, "flags", py::dtype::of<uint8_t>(), keep);
        take(st.epos, arrays, "epos", py::dtype::of<uint8_t>(), keep);
        take(st.written, arrays, "written", py::dtype::of<int64_t>(), keep);
        take(st.open, arrays, "open", py::dtype::of<bool>(), keep);
        take(st.rng, arrays, "rng", py::dtype::of<uint64_t>(), keep);
        take(st.priorities, arrays, "priorities", py::dtype::of<double>(), keep);
        if (load) store_.load_state(st);
        else store_.check_state(st);
    }

    const std::vector<py::ssize_t>& frame_shape() const { return frame_shape_; }
    const py::dtype& dtype() const { return dtype_; }

private:
    template <class T>
    static void take(ArrayRef<T>& ref, const py::dict& arrays, const char* key, const py::dtype& dtype,
                     std::vector<py::array>& keep) {
        const std::string where = std::string("replay state['") + key + "']: expected ";
        if (!arrays.contains(key)) throw py::value_error(where + "an array, got none");
        py::object obj = arrays[key];
        if (!py::isinstance<py::array>(obj))
            throw py::type_error(where + "a numpy array, got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
        py::array a = py::reinterpret_borrow<py::array>(obj);
        if (!a.dtype().equal(dtype))
            throw py::type_error(where + "dtype " + std::string(py::str(dtype)) + ", got " +
                                 std::string(py::str(a.dtype())));
        keep.push_back(py::array::ensure(a, py::array::c_style));
        ref.data = static_cast<const T*>(keep.back().data());
        ref.shape.assign(keep.back().shape(), keep.back().shape() + keep.back().ndim());
    }

    // Checks a batch's output arrays (window_slots [B, window], action, reward, done, discount [B],
    // frames out [B, window, *frame] or None) and returns their pointers (frames null for None);
    // `keep` holds the frames' array alive while the pointer is in use.
    BatchOut outputs(int64_t batch, py::array& window_slots, py::array& action, py::array& reward, py::array& done,
                     py::array& discount, py::object& out_obj, py::array& keep) {
        const py::ssize_t w = store_.window();
        require_dtype<int64_t>(window_slots, "window_slots", {batch, w});
        require_dtype<int64_t>(action, "action", {batch});
        require_dtype<float>(reward, "reward", {batch});
        require_dtype<float>(done, "done", {batch});
        require_dtype<float>(discount, "discount", {batch});
        BatchOut o{ptr<int64_t>(window_slots), ptr<int64_t>(action), ptr<float>(reward), ptr<float>(done),
                   ptr<float>(discount)};
        if (out_obj.is_none()) return o;
        keep = py::array::ensure(out_obj);
        auto shape = with_lead(w);
        shape.insert(shape.begin(), batch);
        require_array(keep, "out", shape, dtype_);
        require_writable(keep, "out");
        o.frames = ptr<uint8_t>(keep);
        return o;
    }

    // Frames are required when the store keeps them and must be None when it does not (they live
    // elsewhere, e.g. on a GPU, and the caller writes them to the returned slots).
    // `keep` holds the array alive while the returned pointer is in use.
    const uint8_t* frame_data(const py::object& obj, const char* name, std::vector<py::ssize_t> lead, py::array& keep) {
        if (!store_.options().store_frames) {
            if (!obj.is_none()) throw py::value_error(std::string(name) + ": this store keeps no frames; pass None");
            return nullptr;
        }
        py::array& a = keep;
        a = py::array::ensure(obj);
        if (!a) throw py::type_error(std::string(name) + ": expected a numpy " + std::string(py::str(dtype_)) +
                                     " array, got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
        lead.insert(lead.end(), frame_shape_.begin(), frame_shape_.end());
        require_array(a, name, lead, dtype_);
        return static_cast<const uint8_t*>(a.data());
    }

    std::vector<py::ssize_t> with_lead(py::ssize_t n) const {
        std::vector<py::ssize_t> s{n};
        s.insert(s.end(), frame_shape_.begin(), frame_shape_.end());
        return s;
    }
    template <class T>
    static void require_dtype(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape) {
        if (!a.dtype().equal(py::dtype::of<T>()))
            throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                                 ", got " + std::string(py::str(a.dtype())));
        bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
        for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
        if (!ok) throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(a));
        if (!(a.flags() & py::array::c_style) || !a.writeable())
            throw py::value_error(std::string(name) + ": expected a writable C-contiguous array");
    }

    ReplayStore store_;
    py::dtype dtype_;                       // store_.options().dtype as numpy's, for checks and views
    std::vector<py::ssize_t> frame_shape_;  // store_.options().frame_shape as numpy's
};

// ReplayOptions(**kwargs): each keyword goes through the option's property setter below, so a
// wrong type is a TypeError and an int beyond 64 bits a ValueError, both naming the option.
ReplayOptions make_options(const py::kwargs& kwargs) {
    ReplayOptions o;
    py::object view = py::cast(&o, py::return_value_policy::reference);
    const py::object property = py::module_::import("builtins").attr("property");
    for (auto item : kwargs) {
        const std::string name = py::str(item.first);
        if (!py::isinstance(py::getattr(py::type::of(view), name.c_str(), py::none()), property))
            throw py::type_error("ReplayOptions: unexpected option '" + name + "'");
        try {
            view.attr(name.c_str()) = item.second;
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_TypeError)) throw;
            auto type_name = [](const py::handle& v) { return std::string(py::str(py::type::of(v).attr("__name__"))); };
            if (PyLong_Check(item.second.ptr()) && !PyBool_Check(item.second.ptr()))
                throw py::value_error(name + ": expected an int that fits in 64 bits, got " +
                                      std::string(py::repr(item.second)));
            throw py::type_error(name + ": expected " + type_name(view.attr(name.c_str())) + ", got " +
                                 type_name(item.second));
        }
    }
    return o;
}

// A numpy view of the store's memory that keeps the owning Python object alive.
template <class T>
py::array view(py::object owner, T* data, std::vector<py::ssize_t> shape) {
    return py::array_t<T>(shape, data, owner);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastdqn C++ core: fused frame preprocessing and the frame-deduplicating replay store";
    m.def("preprocess_batch", &preprocess_batch, py::arg("frames"), py::arg("prev"), py::arg("out"),
          py::arg("layout") = "crop", py::arg("threads") = 0,
          "Max-pool (when prev is given), luma, INTER_AREA resize and crop of [N,H,160,3] uint8 frames into out [N,84,84].");
    m.def("hardware_threads", &hardware_threads);
    m.def("copy_windows", &copy_windows, py::arg("frames"), py::arg("starts"), py::arg("out"),
          "Bench baseline: out[b] = frames[starts[b]:starts[b] + out.shape[1]], one memcpy per window.");

    py::class_<ReplayOptions>(m, "ReplayOptions",
                              "What a ReplayCore is made with (keywords; fastdqn.ReplayBuffer's signature has the "
                              "defaults); ReplayCore validates them (ValueError naming the option).")
        .def(py::init(&make_options))
        .def_readwrite("capacity", &ReplayOptions::capacity)
        .def_readwrite("num_envs", &ReplayOptions::num_envs)
        .def_readwrite("frame_shape", &ReplayOptions::frame_shape)
        .def_readwrite("dtype", &ReplayOptions::dtype)
        .def_readwrite("stack", &ReplayOptions::stack)
        .def_readwrite("pad", &ReplayOptions::pad)
        .def_property("seed", [](const ReplayOptions& o) { return o.seed; },
                      [](ReplayOptions& o, const py::int_& seed) {  // Python's seeds fold modulo 2^64
                          if (PyObject_RichCompareBool(seed.ptr(), py::int_(0).ptr(), Py_LT) == 1)
                              throw py::value_error("seed: expected an int >= 0, got " + std::string(py::repr(seed)));
                          o.seed = PyLong_AsUnsignedLongLongMask(seed.ptr());
                      })
        .def_readwrite("store_frames", &ReplayOptions::store_frames)
        .def_readwrite("n_step", &ReplayOptions::n_step)
        .def_readwrite("gamma", &ReplayOptions::gamma)
        .def_readwrite("prioritized", &ReplayOptions::prioritized)
        .def_readwrite("alpha", &ReplayOptions::alpha)
        .def_readwrite("eps", &ReplayOptions::eps);

    py::class_<ReplayCore>(m, "ReplayCore")
        .def(py::init<const ReplayOptions&>(), py::arg("options"))
        .def_property_readonly("options", [](ReplayCore& c) { return c.store().options(); }, "a copy")
        .def("start", &ReplayCore::start, py::arg("frame"), py::arg("env"))
        .def("add", &ReplayCore::add, py::arg("action"), py::arg("reward"), py::arg("next_frame"), py::arg("terminated"),
             py::arg("truncated"), py::arg("env"))
        .def("start_many", &ReplayCore::start_many, py::arg("frames"), py::arg("envs"), py::arg("count"))
        .def("add_many", &ReplayCore::add_many, py::arg("actions"), py::arg("rewards"), py::arg("next_frames"),
             py::arg("terminated"), py::arg("truncated"), py::arg("envs"), py::arg("count"))
        .def("sample_into", &ReplayCore::sample_into, py::arg("batch"), py::arg("window_slots"), py::arg("action"),
             py::arg("reward"), py::arg("done"), py::arg("discount"), py::arg("out"), py::arg("threads") = 0,
             py::arg("weights") = py::none(), py::arg("indices") = py::none(), py::arg("beta") = 0.0)
        .def("update_priorities", &ReplayCore::update_priorities, py::arg("indices"), py::arg("priorities"))
        .def("priorities", [](ReplayCore& c) {
            auto v = c.store().leaf_priorities();
            return py::make_tuple(py::array_t<double>(static_cast<py::ssize_t>(v.size()), v.data()),
                                  c.store().max_priority());
        })
        .def("transition_into", &ReplayCore::transition_into, py::arg("env"), py::arg("t"), py::arg("window_slots"),
             py::arg("action"), py::arg("reward"), py::arg("done"), py::arg("discount"), py::arg("out"))
        .def("check_batch", [](ReplayCore& c, int64_t batch) { c.store().check_batch(batch); }, py::arg("batch"))
        .def("__len__", [](ReplayCore& c) { return c.store().size(); })
        .def_property_readonly("window", [](ReplayCore& c) { return c.store().window(); })
        .def_property_readonly("nbytes", [](ReplayCore& c) { return c.store().nbytes(); })
        // Raw state for checkpoints: views into the live storage, valid while the buffer lives.
        .def("arrays", [](py::object self) {
            auto& c = self.cast<ReplayCore&>();
            auto& s = c.store();
            py::dict d;
            const py::ssize_t cap = s.options().capacity;
            if (s.options().store_frames) {
                std::vector<py::ssize_t> shape{cap};
                shape.insert(shape.end(), c.frame_shape().begin(), c.frame_shape().end());
                d["frames"] = py::array(c.dtype(), shape, s.frames_data(), self);
            }
            d["actions"] = view(self, s.actions_data(), {cap});
            d["rewards"] = view(self, s.rewards_data(), {cap});
            d["flags"] = view(self, s.flags_data(), {cap});
            d["epos"] = view(self, s.epos_data(), {cap});
            return d;
        })
        .def("streams", [](ReplayCore& c) {
            py::list out;
            for (const auto& s : c.store().streams()) out.append(py::make_tuple(s.written, s.open));
            return out;
        })
        .def_property_readonly("rng_state", [](ReplayCore& c) { return c.store().rng_state(); })
        .def("check_state", [](ReplayCore& c, const ReplayOptions& o, const py::dict& a, double max_priority, int64_t len) {
            c.state(o, a, max_priority, len, false);
        }, py::arg("options"), py::arg("arrays"), py::arg("max_priority"), py::arg("len"),
           "ValueError/TypeError naming what is wrong with a saved state for this store")
        .def("load_state", [](ReplayCore& c, const ReplayOptions& o, const py::dict& a, double max_priority, int64_t len) {
            c.state(o, a, max_priority, len, true);
        }, py::arg("options"), py::arg("arrays"), py::arg("max_priority"), py::arg("len"),
           "check_state, then replace the contents (the frames only when the store keeps them)");
}
