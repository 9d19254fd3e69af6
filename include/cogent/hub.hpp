// The per-thread Hub and the module-level functions that yield to it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

namespace detail {
class HubImpl;
}

// A handle to one thread's hub: the greenlet that runs that thread's event loop. Each OS thread
// that uses cogent gets its own hub on first use; the main thread's uses libev's default loop.
class COGENT_API Hub {
public:
    explicit Hub(detail::HubImpl* impl) noexcept : impl_(impl) {}
    // Queue fn to run on the hub, after the callbacks already queued (FIFO). Call from the hub's
    // own thread; fn must not block (it runs on the hub). Exceptions from fn are reported.
    void run_callback(std::function<void()> fn);
    // Same, callable from any thread: wakes the hub through its async watcher.
    void run_callback_threadsafe(std::function<void()> fn);
    // A process-unique number for this hub (1 for the first hub created).
    std::uint64_t index() const noexcept;
    // True when called on this hub's thread.
    bool is_current_thread() const noexcept;
    // Run the hub's loop until nothing is left for it to do (gevent's Hub.join): no runnable
    // greenlet, no referenced timer (sleep, Timeout, spawn_later), no fd being waited on, no
    // ThreadPool result on its way, no server or signal handler holding the loop. Greenlets
    // blocked on something nothing can set any more (an Event nobody holds) do not count.
    // Returns true then, false when `timeout` passed first (its timer does not keep the loop
    // alive). Call from the main greenlet of this hub's thread: GreenletError from another
    // greenlet or thread, BlockingSwitchOutError on the hub. Kill and Timeout interrupt it.
    bool join(TimeoutArg timeout = {});
    detail::HubImpl* impl() const noexcept { return impl_; }
    friend bool operator==(const Hub& a, const Hub& b) noexcept { return a.impl_ == b.impl_; }

private:
    detail::HubImpl* impl_;
};

// The calling thread's hub, created on first use.
COGENT_API Hub get_hub();

// Block the current greenlet for d. sleep(0) (or a negative d) yields to every greenlet that is
// already runnable and returns. A ref=false sleep does not keep the hub's loop alive (it cannot
// prevent LoopExit). Throws BlockingSwitchOutError on the hub. Kill and Timeout interrupt it.
COGENT_API void sleep(Duration d, bool ref = true);
template <class Rep, class Period>
void sleep(std::chrono::duration<Rep, Period> d, bool ref = true) {
    // Rounded up and saturated: longer than the clock can express (seconds::max(), 1000 years,
    // an infinite double) sleeps for Duration::max(), in effect forever. NaN is rejected.
    sleep(detail::saturate(d, "sleep"), ref);
}
// gevent spelling: seconds as a number, sleep(0) to yield. NaN is rejected; HUGE_VAL (or any
// value beyond about 9.2e9 s) sleeps for Duration::max().
inline void sleep(double seconds, bool ref = true) {
    if (seconds != seconds) detail::duration_is_nan("sleep");
    sleep(seconds > 0 ? detail::saturate(std::chrono::duration<double>(seconds), "sleep")
                      : Duration::zero(),
          ref);
}
// Yield once to every runnable greenlet: sleep(0).
inline void yield() { sleep(Duration::zero()); }

// Block until the hub has nothing else to do (no runnable greenlet, no pending event).
COGENT_API void idle();

}  // namespace cogent
