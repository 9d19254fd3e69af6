// Semaphore and BoundedSemaphore: counting semaphores for greenlets (gevent.lock.Semaphore,
// gevent.lock.BoundedSemaphore).
#pragma once

#include <chrono>
#include <functional>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/std_lockable.hpp"
#include "cogent/time.hpp"

namespace cogent {

namespace detail {
// What a Semaphore-based lock calls itself in messages (WaitableDestroyed, LoopExit) and what
// its release() says above the bound.
struct COGENT_INTERNAL_API SemaphoreNames {
    const char* kind;          // "Lock"
    const char* acquire;       // "Lock::acquire"
    const char* wait;          // "Lock::wait"
    const char* over_release;  // release() above the bound
};
}  // namespace detail

// A counter of permits. acquire() takes one, blocking while there is none; release() gives one
// back. Fair: greenlets blocked in acquire() are served in FIFO order, and a newcomer never takes
// a permit ahead of them. Waking never switches: release() schedules one hub callback. A waiter
// that leaves (timeout, kill) between a release() and its wake-up takes nothing, so the permit
// goes to the next waiter or stays counted. Destroying it wakes its waiters with
// WaitableDestroyed (as for every waitable). Not movable. All calls belong to one thread (the
// first to block on it); other threads get GreenletError.
// Also a BasicLockable/TimedLockable (lock, unlock, try_lock, try_lock_for, try_lock_until), so
// std::lock_guard and std::unique_lock work with it.
class COGENT_API Semaphore : public detail::Linkable, public detail::StdLockable<Semaphore> {
public:
    // Start with `value` permits. Throws std::invalid_argument if value < 0.
    explicit Semaphore(int value = 1);

    // Take a permit. blocking=false (or a zero timeout) never blocks. Returns false if none was
    // available in time. Throws BlockingSwitchOutError on the hub (only when it would block),
    // and whatever kill/Timeout raise; a permit is never lost or taken on those paths.
    bool acquire(bool blocking = true, TimeoutArg timeout = {});
    // acquire(true, timeout).
    bool acquire(TimeoutArg timeout) { return acquire(true, timeout); }
    // Give a permit back and wake the first waiter (it runs when the caller next yields).
    // Returns the new counter. Throws std::logic_error above the bound (BoundedSemaphore, Lock).
    int release();
    // Block until a permit is available (without taking it) or timeout; returns the counter
    // (0 on timeout). Throws what kill/Timeout raise.
    int wait(TimeoutArg timeout = {});

    // True if acquire(false) would fail now: no permit, or greenlets already queued for one.
    bool locked() const noexcept { return counter_ <= 0 || acquirers_ > 0; }
    // Permits available now.
    int counter() const noexcept { return counter_; }
    // Greenlets currently blocked in acquire().
    int waiting() const noexcept { return acquirers_; }

    // Call `cb(*this)` on the hub when a permit is available (gevent's rawlink): once, in FIFO
    // order with the greenlets blocked in acquire()/wait(), from the hub callback that wakes
    // them after a release(), and only if a permit is still there when its turn comes; at the
    // next turn of the hub if one is available already. The callback takes nothing (it may try
    // acquire(false)); it must not block (an exception from it is reported on stderr). Returns
    // an id for unlink(). Throws std::invalid_argument for an empty cb, GreenletError from
    // another thread. (Inherited by BoundedSemaphore and Lock.)
    LinkId rawlink(std::function<void(Semaphore&)> cb) {
        return rawlink_as<Semaphore>(std::move(cb));
    }
    // Remove a rawlink that has not been called yet; a fired, removed or unknown id does
    // nothing (ids are never reused). Never blocks.
    void unlink(LinkId id) { remove_rawlink(id); }

    // Linkable: a permit is available (what iwait/wait and Semaphore::wait wait for).
    bool ready() const noexcept override { return counter_ > 0; }

protected:
    // A semaphore whose release() throws std::logic_error(names->over_release) above `bound`;
    // `names` (static) names it in messages.
    Semaphore(int value, int bound, const detail::SemaphoreNames* names);

private:
    int counter_;
    int bound_;
    int acquirers_ = 0;
    const detail::SemaphoreNames* names_;
};

// A Semaphore that refuses to be released above its initial value: release() then throws
// std::logic_error("... released too many times") (gevent raises ValueError).
class COGENT_API BoundedSemaphore : public Semaphore {
public:
    // Start (and cap) at `value` permits. Throws std::invalid_argument if value < 0.
    explicit BoundedSemaphore(int value = 1);
};

}  // namespace cogent
