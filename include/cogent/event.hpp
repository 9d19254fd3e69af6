// Event: a flag greenlets can wait for (gevent.event.Event).
#pragma once

#include <functional>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

// Greenlets wait() until some other greenlet set()s it. Waking never switches: set() schedules
// one hub callback that wakes the waiters and rawlinks in FIFO order. Every party waiting when
// set() is called is woken (wait() returns true) even if clear() comes before its turn, as with
// threading.Event; parties that arrive after the clear() are not. Not movable (waiters point at
// it). It belongs to the thread that constructed it: every call from another thread throws
// GreenletError.
class COGENT_API Event : public detail::Linkable {
public:
    Event() noexcept;
    // Set the flag and wake every waiter (they run when the caller next yields).
    void set();
    // Reset the flag; later wait() calls block again. GreenletError from another thread.
    void clear() {
        check_thread("Event::clear");
        flag_ = false;
    }
    bool is_set() const noexcept { return flag_; }
    // Block until set or timeout; returns the flag (true if it was set). If already set, returns
    // true at once, except while the waiters of a set() are still being woken: then it waits
    // for them to be woken first and returns true in the same wake-up round (gevent issue 1520;
    // a zero timeout, or a call on the hub, still returns at once). Throws
    // BlockingSwitchOutError on the hub (when it would block), and whatever kill/Timeout raise.
    bool wait(TimeoutArg timeout = {});

    // Call `cb(*this)` on the hub when the event is set (gevent's rawlink): once, in FIFO order
    // with the waiters, from the hub callback that wakes them; at the next turn of the hub if it
    // is set already. `cb` must not block (BlockingSwitchOutError; an exception from it is
    // reported on stderr and the hub goes on). Returns an id for unlink(). Throws
    // std::invalid_argument for an empty cb, GreenletError from another thread.
    LinkId rawlink(std::function<void(Event&)> cb) { return rawlink_as<Event>(std::move(cb)); }
    // Remove a rawlink that has not been called yet. An id that fired, was removed already, or
    // is unknown does nothing (ids are never reused). Never blocks. GreenletError from another
    // thread.
    void unlink(LinkId id) { remove_rawlink(id); }
    // linkcount() (from Linkable): how many waiters and rawlinks wait on it now.

    bool ready() const noexcept override { return flag_; }

    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() override;

private:
    bool flag_ = false;
};

}  // namespace cogent
