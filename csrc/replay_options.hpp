// What a replay store is made with, and the one check of those values (validate()). The Python
// ReplayBuffer checks only their types; the bindings turn std::invalid_argument into ValueError.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastdqn {

// A double in the shortest text that reads back as it, as C++ streams print: 0, 1.5, 1e+39, nan.
inline std::string number_text(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[32];
    for (int precision = 1; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}

// A shape as Python prints a tuple: (84, 84), (4,), ().
inline std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

// No defaults but store_frames: the Python ReplayBuffer's signature holds them, once.
struct ReplayOptions {
    int64_t capacity = 0;        // transitions kept over all streams
    int64_t num_envs = 0;        // independent episode streams
    std::vector<int64_t> frame_shape;
    std::string dtype;           // of a frame: "uint8" (pixels) or "float32" (vector observations)
    int64_t stack = 0;           // frames per observation
    std::string pad;             // before an episode's first frame: "zeros" or "repeat" (the first frame)
    uint64_t seed = 0;           // of the sampling RNG
    bool store_frames = true;    // false: only the metadata (frames live elsewhere, e.g. on a GPU)
    int64_t n_step = 0;
    double gamma = 0.0;
    bool prioritized = false;
    double alpha = 0.0;          // prioritized: draw probability ~ priority^alpha
    double eps = 0.0;            // prioritized: added to every updated priority

    int64_t itemsize() const { return dtype == "float32" ? 4 : 1; }
    bool pad_repeat() const { return pad == "repeat"; }
    int64_t frame_bytes() const {
        int64_t n = itemsize();
        for (int64_t d : frame_shape) n *= d;  // validate() has ruled out overflow
        return n;
    }

    // Throws std::invalid_argument "name: expected X, got Y" for the first value out of range.
    void validate() const {
        auto fail = [](const std::string& name, const std::string& expected, const std::string& got) {
            throw std::invalid_argument(name + ": expected " + expected + ", got " + got);
        };
        if (capacity < 1) fail("capacity", "an int >= 1", std::to_string(capacity));
        if (num_envs < 1) fail("num_envs", "an int >= 1", std::to_string(num_envs));
        if (num_envs > INT32_MAX) fail("num_envs", "at most 2^31 - 1 streams", std::to_string(num_envs));
        if (stack < 1 || stack > 64) fail("stack", "an int in [1, 64]", std::to_string(stack));
        if (n_step < 1 || n_step > 64) fail("n_step", "an int in [1, 64]", std::to_string(n_step));
        if (!(gamma >= 0.0 && gamma <= 1.0)) fail("gamma", "a number in [0, 1]", number_text(gamma));
        if (!(alpha >= 0.0 && alpha <= 1.0)) fail("alpha", "a number in [0, 1]", number_text(alpha));
        if (!(eps > 0.0 && std::isfinite(eps))) fail("eps", "a finite number > 0", number_text(eps));
        if (dtype != "uint8" && dtype != "float32") fail("dtype", "one of ('uint8', 'float32')", "'" + dtype + "'");
        if (pad != "zeros" && pad != "repeat") fail("pad", "one of ('zeros', 'repeat')", "'" + pad + "'");
        if (frame_shape.empty()) fail("frame_shape", "at least one dimension", "()");
        int64_t bytes = itemsize();
        for (int64_t d : frame_shape) {
            if (d < 1) fail("frame_shape", "sizes >= 1", shape_text(frame_shape));
            if (bytes > INT64_MAX / d)  // the product would overflow (UB), not just fail to allocate
                fail("frame_shape", "a frame of at most 2^63 - 1 bytes", shape_text(frame_shape));
            bytes *= d;
        }
        // Every stream holds one full stack plus its next frame.
        if (capacity / (stack + 1) < num_envs)
            fail("capacity", ">= (stack + 1) * num_envs = " + std::to_string((stack + 1) * num_envs),
                 std::to_string(capacity));
        if (store_frames && static_cast<uint64_t>(capacity) > SIZE_MAX / static_cast<uint64_t>(bytes))
            fail("capacity", "capacity * frame bytes within the address space",
                 std::to_string(capacity) + " * " + std::to_string(bytes));
    }

    // Why a state saved with `saved` cannot be restored into a store made with these options
    // ("" when it can). The seed (the state carries the RNG) and where frames live are free;
    // gamma matters only to n-step returns, alpha and eps only to a prioritized store.
    std::string state_mismatch(const ReplayOptions& saved) const {
        auto differs = [](const char* name, const std::string& mine, const std::string& got) {
            return std::string("replay state['") + name + "']: expected " + mine + " (this buffer's), got " + got;
        };
        auto quoted = [](const std::string& s) { return "'" + s + "'"; };
        auto flag = [](bool b) { return std::string(b ? "True" : "False"); };
        if (saved.capacity != capacity) return differs("capacity", std::to_string(capacity), std::to_string(saved.capacity));
        if (saved.num_envs != num_envs) return differs("num_envs", std::to_string(num_envs), std::to_string(saved.num_envs));
        if (saved.stack != stack) return differs("stack", std::to_string(stack), std::to_string(saved.stack));
        if (saved.frame_shape != frame_shape)
            return differs("frame_shape", shape_text(frame_shape), shape_text(saved.frame_shape));
        if (saved.dtype != dtype) return differs("dtype", quoted(dtype), quoted(saved.dtype));
        if (saved.pad != pad) return differs("pad", quoted(pad), quoted(saved.pad));
        if (saved.n_step != n_step) return differs("n_step", std::to_string(n_step), std::to_string(saved.n_step));
        if (n_step > 1 && saved.gamma != gamma) return differs("gamma", number_text(gamma), number_text(saved.gamma));
        if (saved.prioritized != prioritized) return differs("prioritized", flag(prioritized), flag(saved.prioritized));
        if (prioritized && saved.alpha != alpha) return differs("alpha", number_text(alpha), number_text(saved.alpha));
        if (prioritized && saved.eps != eps) return differs("eps", number_text(eps), number_text(saved.eps));
        return "";
    }
};

}  // namespace fastdqn
