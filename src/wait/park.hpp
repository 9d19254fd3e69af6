// The one parker: every wait of a greenlet (a WaitList, sleep, idle, an fd, several fds, a
// resolver query) switches out through a Parker. Internal. Usage:
//   Parker p(hub, cur);                 // cur: the current greenlet, not the hub's
//   p.on_timeout(&undo, &registration); // optional: runs on the hub before a timed-out resume
//   register(&p);                       // where a hub-side callback finds it and calls
//                                       // p.wake(), or p.wake_later() from any frame
//   if (!p.park(timeout, "Event::wait")) ... timed out ...
// park() arms a timer for a finite timeout on the hub's loop, switches to the hub, and returns
// true once woken, false once the timeout passed; whatever is thrown into the greenlet meanwhile
// (kill, Timeout) propagates. The timer is disarmed on every path out (the destructor does it,
// including for a timer that fired but whose callback has not run). A switch into the
// greenlet that is neither a wake nor the timeout throws InvalidSwitchError ("cogent:
// unexpected switch into a greenlet waiting in <what>").
// Parker::yield is the one wait with nothing to arm: a yield (sleep(0)).
#pragma once

#include <new>

#include "core/switch.hpp"
#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent::detail {

// InvalidSwitchError for a greenlet switched into while waiting in `what`.
[[noreturn, gnu::cold]] void invalid_switch(const char* what);

class Parker {
public:
    Parker(HubImpl* hub, GreenletImpl* g) noexcept
        : hub_(hub), g_(g), timer_(&Parker::on_timer, this) {}
    ~Parker() {
        if (queued_) [[unlikely]]
            queued_wake().~WakeCallback();  // unlinks it if still queued (killed meanwhile)
    }
    Parker(const Parker&) = delete;
    Parker& operator=(const Parker&) = delete;

    HubImpl* hub() const noexcept { return hub_; }
    GreenletImpl* greenlet() const noexcept { return g_; }

    // When the timeout passes, fn(ctx) runs on the hub before the greenlet is resumed: undo
    // the registration there, so that nothing else wakes it too.
    void on_timeout(void (*fn)(void*), void* ctx) noexcept {
        on_timeout_ = fn;
        timeout_ctx_ = ctx;
    }

    // Hub side (a watcher's or a wait list's callback): the wait is over, switch into the
    // greenlet now. Not noexcept, like resume(), so that calls to it can be tail calls: a
    // frame left between a callback and the switch costs a mispredicted return (switch.hpp).
    void wake() {
        woken_ = true;
        resume(g_);
    }
    // From any frame, never switching (another greenlet's, a destructor's): the wait is over;
    // the greenlet is resumed by a hub callback queued now. Disarms the timer. At most once.
    void wake_later() noexcept {
        timer_.stop();
        auto* w = new (wake_buf_) WakeCallback;
        queued_ = true;
        w->g = g_;
        hub_->schedule(w);
    }
    // Stop the timer (the wait is being ended another way).
    void disarm() noexcept { timer_.stop(); }

    // Switch out until woken (true) or until `timeout` passes (false); see the top of the
    // file. ref = false: the timer does not keep the hub's loop alive (an unreferenced sleep).
    [[gnu::always_inline]] inline bool park(TimeoutArg timeout, const char* what, bool ref = true) {
        if (!timeout.forever()) timer_.start(hub_->loop(), timeout.value(), ref);
        hub_->switch_out(g_, what);
        if (woken_) [[likely]]
            return true;
        if (timed_out_) return false;
        if (queued_ && queued_wake().woken) return true;
        invalid_switch(what);
    }

    // A yield (sleep(0)): queue the greenlet's own wake-up behind everything already runnable
    // and switch out. The cheapest park there is, without a Parker object: it is on the path
    // of every cooperative loop.
    [[gnu::always_inline]] static inline void yield(HubImpl* hub, GreenletImpl* cur,
                                                    const char* what) {
        WakeCallback y;
        y.g = cur;
        if (cur == hub->greenlet) blocking_on_hub(what);
        hub->schedule(&y);
        hub->switch_out(cur, what);
        if (!y.woken) invalid_switch(what);
    }

    bool woken() const noexcept { return woken_ || (queued_ && queued_wake().woken); }
    bool timed_out() const noexcept { return timed_out_; }

private:
    static void on_timer(loop::Timer& t);
    WakeCallback& queued_wake() noexcept {
        return *std::launder(reinterpret_cast<WakeCallback*>(wake_buf_));
    }
    const WakeCallback& queued_wake() const noexcept {
        return *std::launder(reinterpret_cast<const WakeCallback*>(wake_buf_));
    }

    HubImpl* hub_;
    GreenletImpl* g_;
    bool woken_ = false;
    bool timed_out_ = false;
    bool queued_ = false;  // wake_later() ran: wake_buf_ holds a WakeCallback
    void (*on_timeout_)(void*) = nullptr;
    void* timeout_ctx_ = nullptr;
    loop::Timer timer_;
    // The WakeCallback wake_later() queues, constructed there only: parks that never take that
    // path (nearly all) do not pay for initialising it.
    alignas(WakeCallback) unsigned char wake_buf_[sizeof(WakeCallback)];
};

}  // namespace cogent::detail
