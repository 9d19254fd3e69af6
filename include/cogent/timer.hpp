// Timer / call_later: run a function in a new greenlet after a delay, unless cancelled first
// (threading.Timer, with greenlets).
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/time.hpp"

namespace cogent {

// A handle to a delayed call (copyable; copies share the call). Unlike threading.Timer it is
// armed on construction. Dropping every handle does not cancel it. Calls belong to the thread
// that created it.
class COGENT_API Timer {
public:
    // Call fn(args...) in a new greenlet once `delay` has passed (arguments are copied or moved
    // in, like spawn). std::invalid_argument for a negative delay.
    template <class Rep, class Period, class F, class... A>
    Timer(std::chrono::duration<Rep, Period> delay, F&& fn, A&&... args)
        : g_(spawn_later(delay, std::forward<F>(fn), std::forward<A>(args)...)),
          cancelled_(std::make_shared<bool>(false)) {}
    // Same, with the delay in seconds (gevent style). std::invalid_argument for NaN or < 0.
    template <class F, class... A>
    Timer(double seconds, F&& fn, A&&... args)
        : Timer(to_duration(seconds), std::forward<F>(fn), std::forward<A>(args)...) {}

    // Stop the call from ever running: true if this did it, false if the call already started
    // (or finished, or was cancelled); a running call is never interrupted.
    bool cancel() {
        if (g_.dead() || g_.state()->started()) return false;
        g_.state()->kill(std::make_exception_ptr(GreenletExit()), false, {});
        *cancelled_ = true;
        return true;
    }
    // True if cancel() stopped it before it ran.
    bool cancelled() const noexcept { return *cancelled_; }
    // True once it is over: the call returned or threw, or it was cancelled.
    bool ready() const noexcept { return g_.dead(); }
    // True while the delay is still running (neither started nor cancelled).
    bool pending() const noexcept { return !g_.dead() && !g_.state()->started(); }
    // Wait until ready(); false on timeout. Does not rethrow the call's exception (see
    // greenlet().exception()). Throws BlockingSwitchOutError on the hub; kill/Timeout interrupt.
    bool join(TimeoutArg timeout = {}) { return g_.join(timeout); }
    // The greenlet that runs (or ran) the call.
    const AnyGreenlet& greenlet() const noexcept { return g_; }

private:
    static Duration to_duration(double seconds) {
        if (seconds != seconds) detail::duration_is_nan("Timer delay");
        if (!(seconds >= 0))
            throw std::invalid_argument("cogent: Timer delay must be >= 0 seconds");
        // Saturated: a delay beyond what the clock can express is Duration::max(), not "now".
        return detail::saturate(std::chrono::duration<double>(seconds), "Timer delay");
    }
    AnyGreenlet g_;
    std::shared_ptr<bool> cancelled_;
};

// Call fn(args...) in a new greenlet after `delay` (a std::chrono duration or seconds); returns
// the Timer handle, whose cancel() stops it if it has not started yet.
template <class D, class F, class... A>
Timer call_later(D delay, F&& fn, A&&... args) {
    return Timer(delay, std::forward<F>(fn), std::forward<A>(args)...);
}

}  // namespace cogent
