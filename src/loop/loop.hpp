// The event loop: libev behind a small RAII class, so that <ev.h> reaches src/loop/*.cpp only.
// Internal. Usage (one Loop per hub, on the hub's thread):
//   loop::Loop loop(/*default_loop=*/is_main_thread);
//   loop.set_wakeup(&on_wakeup, this);  // runs on the loop's thread after any thread's wake()
//   loop.run();                         // until break_one()/break_all() or nothing referenced
//   loop.run_nowait();                  // one non-blocking poll
// Watchers (timers, fds, signals...) are in loop/watchers.hpp.
#pragma once

#include <atomic>
#include <cstdint>

struct ev_loop;  // libev's; opaque outside src/loop/
struct ev_async;

namespace cogent::loop {

namespace impl {
class Watcher;
}

class Loop {
public:
    // default_loop: libev's default loop, the only one that can watch signals (the main
    // thread's); otherwise a loop of its own. Throws std::runtime_error if libev cannot make one.
    explicit Loop(bool default_loop);
    ~Loop();  // stops the wake-up watcher; destroys the loop unless it is libev's default one
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    bool is_default() const noexcept { return default_; }

    // Run until break_one()/break_all() or until no referenced watcher is active.
    void run();
    // Poll once without blocking and run the callbacks of what is ready.
    void run_nowait();
    // Make the innermost run() (break_one) or every run() (break_all) return after the
    // callback it is in. From the loop's thread only.
    void break_one() noexcept;
    void break_all() noexcept;

    // The loop's cached clock, in seconds (libev's ev_now), and bringing it up to date.
    double now() const noexcept;
    void update_now() noexcept;

    // Count one more (ref) or one fewer (unref) reason for run() to go on, beside the active
    // referenced watchers. Watchers have their own ref()/unref(), which are balanced for you.
    void ref() noexcept;
    void unref() noexcept;

    // In a forked child: libev rebuilds its kernel state (epoll fd, wake-up pipe) at the next
    // iteration.
    void fork() noexcept;

    // Cross-thread wake-up: after wake() (any thread, async-signal-safe), fn(data) runs on the
    // loop's thread in a later iteration; several wake()s may give one call. The wake-up alone
    // does not keep run() going. Call set_wakeup once, before the first wake().
    void set_wakeup(void (*fn)(void*), void* data);
    void wake() noexcept;

    // For a thread that watches this loop's thread from outside (the monitor): `sleeping` is
    // true while the loop sleeps in the kernel's poll, and `polls` counts the polls (libev's
    // release/acquire callbacks). On the loop's thread; null stops it.
    struct PollWatch {
        std::atomic<bool> sleeping{false};
        std::atomic<std::uint64_t> polls{0};
        std::atomic<bool> on{false};  // set once the callbacks are installed
    };
    void watch_polls(PollWatch* w) noexcept;

private:
    friend class impl::Watcher;  // the watchers (watchers.hpp) start on the libev loop
    struct ev_loop* raw() const noexcept {
        return loop_;
    }
    static void on_async(struct ::ev_loop*, struct ev_async*, int);
    struct ev_loop* loop_ = nullptr;
    bool default_ = false;
    void (*wake_fn_)(void*) = nullptr;
    void* wake_data_ = nullptr;
    alignas(8) unsigned char async_[40];  // an ev_async (size checked in loop.cpp)
};

}  // namespace cogent::loop
