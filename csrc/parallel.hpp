// Split [0, n) into contiguous chunks over up to `threads` threads (the caller's thread included),
// on a pool of threads started once: a batch of 8 frames takes ~50 us, and starting threads for
// each call cost more than the second core saved.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace fastdqn {

// Read once: glibc's hardware_concurrency() reads /sys on every call (6 us, a tenth of a sample(32)).
inline int hardware_threads() {
    static const int threads = [] {
        const unsigned n = std::thread::hardware_concurrency();
        return n ? static_cast<int>(n) : 1;
    }();
    return threads;
}

// hardware_threads() - 1 workers, started on first use. One job at a time: a caller that finds the
// pool busy (another Python thread's batch) runs its chunks itself instead of waiting. In a child
// made by fork() the workers do not exist, so the child runs everything inline.
class ThreadPool {
public:
    static ThreadPool& instance() {
        static ThreadPool pool(hardware_threads() - 1);
        return pool;
    }

    // body(t) for every t in [0, tasks), spread over the workers and the caller; returns when all ran.
    void run(int tasks, const std::function<void(int)>& body) {
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock() || workers_.empty() || getpid() != owner_pid_) {
            for (int t = 0; t < tasks; ++t) body(t);
            return;
        }
        {
            std::lock_guard<std::mutex> g(mutex_);
            job_ = &body;
            tasks_ = tasks;
            next_ = 0;
            unfinished_ = tasks;
            ++generation_;
        }
        wake_.notify_all();
        work();  // the caller takes chunks too
        std::unique_lock<std::mutex> g(mutex_);
        done_.wait(g, [&] { return unfinished_ == 0; });
        job_ = nullptr;
    }

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> g(mutex_);
            stop_ = true;
        }
        if (getpid() != owner_pid_) {  // a forked child: the threads are not its own; leak the handles
            new std::vector<std::thread>(std::move(workers_));
            return;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

private:
    explicit ThreadPool(int workers) : owner_pid_(getpid()) {
        for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { loop(); });
    }

    void loop() {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> g(mutex_);
        for (;;) {
            wake_.wait(g, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            g.unlock();
            work();
            g.lock();
        }
    }

    // Take tasks until none is left; the last one to finish wakes the caller.
    void work() {
        for (;;) {
            int t;
            const std::function<void(int)>* job;
            {
                std::lock_guard<std::mutex> g(mutex_);
                if (job_ == nullptr || next_ >= tasks_) return;
                t = next_++;
                job = job_;
            }
            (*job)(t);
            std::lock_guard<std::mutex> g(mutex_);
            if (--unfinished_ == 0) done_.notify_one();
        }
    }

    const pid_t owner_pid_;
    std::vector<std::thread> workers_;
    std::mutex run_mutex_;  // held by the one caller whose job the pool runs
    std::mutex mutex_;      // guards everything below
    std::condition_variable wake_, done_;
    const std::function<void(int)>* job_ = nullptr;
    int tasks_ = 0, next_ = 0, unfinished_ = 0;
    uint64_t generation_ = 0;
    bool stop_ = false;
};

template <class Fn>  // Fn(begin, end)
void parallel_for(int64_t n, int threads, Fn&& fn) {
    threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
    if (threads <= 1) {
        if (n > 0) fn(int64_t{0}, n);
        return;
    }
    std::vector<std::exception_ptr> errors(threads);
    const int64_t chunk = (n + threads - 1) / threads;
    ThreadPool::instance().run(threads, [&](int t) {
        const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
        try {
            if (lo < hi) fn(lo, hi);
        } catch (...) {
            errors[t] = std::current_exception();
        }
    });
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace fastdqn
