// Split [0, n) into contiguous chunks over up to `threads` threads (the caller's thread included).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace fastdqn {

inline int hardware_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

template <class Fn>  // Fn(begin, end)
void parallel_for(int64_t n, int threads, Fn&& fn) {
    threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
    if (threads <= 1) {
        if (n > 0) fn(int64_t{0}, n);
        return;
    }
    std::vector<std::thread> workers;
    std::vector<std::exception_ptr> errors(threads);
    workers.reserve(threads - 1);
    const int64_t chunk = (n + threads - 1) / threads;
    auto body = [&](int t) {
        const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
        try {
            if (lo < hi) fn(lo, hi);
        } catch (...) {
            errors[t] = std::current_exception();
        }
    };
    for (int t = 1; t < threads; ++t) workers.emplace_back(body, t);
    body(0);
    for (auto& w : workers) w.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace fastdqn
