// The one pybind11 file: validates with the GIL held, then releases it around the C++ loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

// ReplayStore plus the frame shape and dtype, so errors can name them. The store itself keeps
// frames as bytes: uint8 pixels and float32 vectors take the same code path.
class ReplayCore {
public:
    ReplayCore(int64_t capacity, int num_envs, std::vector<py::ssize_t> frame_shape, int stack, bool pad_repeat,
               uint64_t seed, bool store_frames, const std::string& dtype, int n_step, double gamma, bool prioritized,
               double alpha, double eps)
        : frame_shape_(std::move(frame_shape)), dtype_(frame_dtype(dtype)),
          store_(capacity, num_envs, frame_bytes(frame_shape_, dtype_.itemsize()), stack, pad_repeat, seed,
                 store_frames, n_step, gamma, prioritized, alpha, eps) {}

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

    // Fills caller-allocated (pinned) outputs; window_slots [B, window] int64 is returned for inspection.
    void sample_into(int64_t batch, py::array window_slots, py::array action, py::array reward, py::array done,
                     py::array discount, py::object out_obj, int threads) {
        py::array keep;
        auto* out = outputs(batch, window_slots, action, reward, done, discount, out_obj, keep);
        if (threads <= 0) threads = hardware_threads();
        const Rows p(window_slots, action, reward, done, discount);
        py::gil_scoped_release nogil;
        if (out) store_.sample(batch, p.ws, p.a, p.r, p.d, p.g, out, threads);
        else store_.draw(batch, p.ws, p.a, p.r, p.d, p.g);
    }

    // sample_into for a prioritized store, plus the importance weights and the indices.
    void sample_prioritized_into(int64_t batch, double beta, py::array window_slots, py::array action,
                                 py::array reward, py::array done, py::array discount, py::array weights,
                                 py::array indices, py::object out_obj) {
        py::array keep;
        auto* out = outputs(batch, window_slots, action, reward, done, discount, out_obj, keep);
        require_dtype<float>(weights, "weights", {batch});
        require_dtype<int64_t>(indices, "indices", {batch});
        const Rows p(window_slots, action, reward, done, discount);
        auto* w = ptr<float>(weights);
        auto* ix = ptr<int64_t>(indices);
        py::gil_scoped_release nogil;
        store_.sample_prioritized(batch, beta, p.ws, p.a, p.r, p.d, p.g, w, ix, out);
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
        auto* out = outputs(1, window_slots, action, reward, done, discount, out_obj, keep);
        const Rows p(window_slots, action, reward, done, discount);
        store_.transition_at(env, t, p.ws, p.a, p.r, p.d, p.g, out);
    }

    const std::vector<py::ssize_t>& frame_shape() const { return frame_shape_; }
    const py::dtype& dtype() const { return dtype_; }

private:
    // The data pointers of a batch's checked output arrays (see outputs()).
    struct Rows {
        Rows(py::array& ws_, py::array& a_, py::array& r_, py::array& d_, py::array& g_)
            : ws(ptr<int64_t>(ws_)), a(ptr<int64_t>(a_)), r(ptr<float>(r_)), d(ptr<float>(d_)), g(ptr<float>(g_)) {}
        int64_t* ws;
        int64_t* a;
        float *r, *d, *g;
    };

    // Checks a batch's output arrays (window_slots [B, window], action, reward, done, discount [B],
    // frames out [B, window, *frame] or None) and returns the frames' pointer (null for None);
    // `keep` holds the frames' array alive while the pointer is in use.
    uint8_t* outputs(int64_t batch, py::array& window_slots, py::array& action, py::array& reward, py::array& done,
                     py::array& discount, py::object& out_obj, py::array& keep) {
        const py::ssize_t w = store_.window();
        require_dtype<int64_t>(window_slots, "window_slots", {batch, w});
        require_dtype<int64_t>(action, "action", {batch});
        require_dtype<float>(reward, "reward", {batch});
        require_dtype<float>(done, "done", {batch});
        require_dtype<float>(discount, "discount", {batch});
        if (out_obj.is_none()) return nullptr;
        keep = py::array::ensure(out_obj);
        auto shape = with_lead(w);
        shape.insert(shape.begin(), batch);
        require_array(keep, "out", shape, dtype_);
        require_writable(keep, "out");
        return ptr<uint8_t>(keep);
    }

    // Frames are required when the store keeps them and must be None when it does not (they live
    // elsewhere, e.g. on a GPU, and the caller writes them to the returned slots).
    // `keep` holds the array alive while the returned pointer is in use.
    const uint8_t* frame_data(const py::object& obj, const char* name, std::vector<py::ssize_t> lead, py::array& keep) {
        if (!store_.stores_frames()) {
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

    static py::dtype frame_dtype(const std::string& name) {
        if (name != "uint8" && name != "float32")
            throw py::value_error("dtype: expected 'uint8' or 'float32', got '" + name + "'");
        return py::dtype(name);
    }
    static int64_t frame_bytes(const std::vector<py::ssize_t>& shape, int64_t itemsize) {
        if (shape.empty()) throw py::value_error("frame_shape: expected at least one dimension, got ()");
        int64_t n = itemsize;
        for (auto d : shape) {
            if (d < 1) throw py::value_error("frame_shape: expected positive sizes, got " + shape_str(shape));
            if (n > INT64_MAX / d)  // the product would overflow (UB), not just fail to allocate
                throw py::value_error("frame_shape: expected a frame of at most 2^63 - 1 bytes, got " + shape_str(shape));
            n *= d;
        }
        return n;
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

    std::vector<py::ssize_t> frame_shape_;
    py::dtype dtype_;
    ReplayStore store_;
};

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

    py::class_<ReplayCore>(m, "ReplayCore")
        .def(py::init<int64_t, int, std::vector<py::ssize_t>, int, bool, uint64_t, bool, const std::string&, int,
                      double, bool, double, double>(),
             py::arg("capacity"), py::arg("num_envs"), py::arg("frame_shape"), py::arg("stack"), py::arg("pad_repeat"),
             py::arg("seed"), py::arg("store_frames") = true, py::arg("dtype") = "uint8", py::arg("n_step") = 1,
             py::arg("gamma") = 0.99, py::arg("prioritized") = false, py::arg("alpha") = 0.6, py::arg("eps") = 1e-6)
        .def("sample_prioritized_into", &ReplayCore::sample_prioritized_into, py::arg("batch"), py::arg("beta"),
             py::arg("window_slots"), py::arg("action"), py::arg("reward"), py::arg("done"), py::arg("discount"),
             py::arg("weights"), py::arg("indices"), py::arg("out"))
        .def("update_priorities", &ReplayCore::update_priorities, py::arg("indices"), py::arg("priorities"))
        .def_property_readonly("prioritized", [](ReplayCore& c) { return c.store().prioritized(); })
        .def_property_readonly("alpha", [](ReplayCore& c) { return c.store().alpha(); })
        .def_property_readonly("eps", [](ReplayCore& c) { return c.store().eps(); })
        .def("priorities", [](ReplayCore& c) {
            auto v = c.store().leaf_priorities();
            return py::make_tuple(py::array_t<double>(static_cast<py::ssize_t>(v.size()), v.data()),
                                  c.store().max_priority());
        })
        .def("set_priorities", [](ReplayCore& c, py::array_t<double, py::array::c_style | py::array::forcecast> p,
                                  double max_priority) {
            if (p.ndim() != 1 || p.shape(0) != c.store().capacity())
                throw py::value_error("priorities: expected " + std::to_string(c.store().capacity()) + " values");
            c.store().recount(p.data(), max_priority);
        }, py::arg("priorities"), py::arg("max_priority"))
        .def("start", &ReplayCore::start, py::arg("frame"), py::arg("env"))
        .def("add", &ReplayCore::add, py::arg("action"), py::arg("reward"), py::arg("next_frame"), py::arg("terminated"),
             py::arg("truncated"), py::arg("env"))
        .def("start_many", &ReplayCore::start_many, py::arg("frames"), py::arg("envs"), py::arg("count"))
        .def("add_many", &ReplayCore::add_many, py::arg("actions"), py::arg("rewards"), py::arg("next_frames"),
             py::arg("terminated"), py::arg("truncated"), py::arg("envs"), py::arg("count"))
        .def("sample_into", &ReplayCore::sample_into, py::arg("batch"), py::arg("window_slots"), py::arg("action"),
             py::arg("reward"), py::arg("done"), py::arg("discount"), py::arg("out"), py::arg("threads") = 0)
        .def("transition_into", &ReplayCore::transition_into, py::arg("env"), py::arg("t"), py::arg("window_slots"),
             py::arg("action"), py::arg("reward"), py::arg("done"), py::arg("discount"), py::arg("out"))
        .def("check_batch", [](ReplayCore& c, int64_t batch) { c.store().check_batch(batch); }, py::arg("batch"))
        .def("__len__", [](ReplayCore& c) { return c.store().size(); })
        .def_property_readonly("capacity", [](ReplayCore& c) { return c.store().capacity(); })
        .def_property_readonly("num_envs", [](ReplayCore& c) { return c.store().num_envs(); })
        .def_property_readonly("stack", [](ReplayCore& c) { return c.store().stack(); })
        .def_property_readonly("n_step", [](ReplayCore& c) { return c.store().n_step(); })
        .def_property_readonly("gamma", [](ReplayCore& c) { return c.store().gamma(); })
        .def_property_readonly("window", [](ReplayCore& c) { return c.store().window(); })
        .def_property_readonly("frame_shape", [](ReplayCore& c) { return py::tuple(py::cast(c.frame_shape())); })
        .def_property_readonly("dtype", [](ReplayCore& c) { return c.dtype(); })
        .def_property_readonly("nbytes", [](ReplayCore& c) { return c.store().nbytes(); })
        // Raw state for checkpoints: views into the live storage, valid while the buffer lives.
        .def("arrays", [](py::object self) {
            auto& c = self.cast<ReplayCore&>();
            auto& s = c.store();
            py::dict d;
            const py::ssize_t cap = s.capacity();
            if (s.stores_frames()) {
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
        .def("set_streams", [](ReplayCore& c, const std::vector<std::pair<int64_t, bool>>& state) {
            auto& streams = c.store().streams();
            if (state.size() != streams.size())
                throw py::value_error("streams: expected " + std::to_string(streams.size()) + " entries, got " +
                                      std::to_string(state.size()));
            for (const auto& st : state) {
                // written < 2^62 keeps written + 1 from overflowing; an open stream's last frame is
                // written - 1, so open with nothing written would make add() touch slot -1.
                if (st.first < 0 || st.first >= (int64_t{1} << 62))
                    throw py::value_error("streams: expected written counts in [0, 2^62), got " + std::to_string(st.first));
                if (st.second && st.first == 0)
                    throw py::value_error("streams: expected an open stream to have written >= 1 frame, got 0");
            }
            for (size_t i = 0; i < state.size(); ++i) {
                streams[i].written = state[i].first;
                streams[i].open = state[i].second;
            }
            c.store().recount();
        })
        .def_property("rng_state", [](ReplayCore& c) { return c.store().rng().state(); },
                      [](ReplayCore& c, const std::vector<uint64_t>& s) { c.store().rng().set_state(s); });
}
