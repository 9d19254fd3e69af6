// Event: a flag greenlets can wait for (gevent.event.Event).
#pragma once

#include "cogent/detail/core.hpp"
#include "cogent/time.hpp"

namespace cogent {

// Greenlets wait() until some other greenlet set()s it. Waking never switches: set() schedules
// one hub callback that resumes the waiters in FIFO order. Not movable (waiters point at it).
// All calls belong to the thread whose greenlets use it.
class Event : public detail::Linkable {
public:
    Event() noexcept;
    // Set the flag and wake every waiter (they run when the caller next yields).
    void set();
    // Reset the flag; later wait() calls block again.
    void clear() noexcept { flag_ = false; }
    bool is_set() const noexcept { return flag_; }
    // Block until set or timeout; returns the flag (true if it was set). Returns at once if
    // already set. Throws BlockingSwitchOutError on the hub, and whatever kill/Timeout raise.
    bool wait(TimeoutArg timeout = {});

    bool ready() const noexcept override { return flag_; }

    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() override;

private:
    static void run_release(detail::Callback* cb);
    bool flag_ = false;
    // set() moves the waiters it found here: they are woken even if clear() comes before the
    // hub runs them (as with threading.Event); waiters that arrive after the clear() are not.
    detail::WaitList releasing_;
    struct ReleaseCb : detail::Callback {
        Event* self;
    } release_cb_;
    bool* releasing_alive_ = nullptr;
};

}  // namespace cogent
