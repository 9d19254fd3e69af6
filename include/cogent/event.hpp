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
    Event() = default;
    // Set the flag and wake every waiter (they run when the caller next yields).
    void set();
    // Reset the flag; later wait() calls block again.
    void clear() noexcept { flag_ = false; }
    bool is_set() const noexcept { return flag_; }
    // Block until set or timeout; returns the flag (true if it was set). Returns at once if
    // already set. Throws BlockingSwitchOutError on the hub, and whatever kill/Timeout raise.
    bool wait(TimeoutArg timeout = {});

    bool ready() const noexcept override { return flag_; }

private:
    bool flag_ = false;
};

}  // namespace cogent
