// Lock, RLock and Condition for greenlets (gevent.lock.Semaphore-based Lock and RLock, and
// threading.Condition as gevent users get it once threading is patched).
#pragma once

#include <chrono>
#include <memory>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/std_lockable.hpp"
#include "cogent/semaphore.hpp"
#include "cogent/time.hpp"

namespace cogent {

// A binary semaphore: acquire() blocks while another greenlet holds it. Any greenlet may
// release it (as with threading.Lock); releasing an unlocked Lock throws std::logic_error.
// FIFO and kill/timeout-safe like Semaphore; works with std::lock_guard and std::unique_lock.
// Semaphore's rawlink/unlink/linkcount apply (a rawlink runs when the lock is released; its
// callback receives the Semaphore&). All calls belong to one thread.
class COGENT_API Lock : public Semaphore {
public:
    // An unlocked lock.
    Lock();
};

// A re-entrant lock owned by a greenlet: its owner may acquire it again (each acquire needs a
// release); release() by any other greenlet throws std::logic_error. Waiters are served FIFO.
// Works with std::lock_guard and std::unique_lock. Not movable. All calls belong to one thread.
class COGENT_API RLock : public detail::StdLockable<RLock> {
public:
    // An unlocked, unowned lock.
    RLock();
    // Drops the reference to its owner; destroying a held lock is a bug. Its waiters are woken
    // with WaitableDestroyed.
    ~RLock();
    RLock(const RLock&) = delete;
    RLock& operator=(const RLock&) = delete;

    // Take the lock, or add one level if the current greenlet owns it (never blocks then).
    // blocking=false or a zero timeout never blocks; returns false if not taken in time.
    // Throws BlockingSwitchOutError on the hub (only when it would block), and what kill or
    // Timeout raise (the lock is then not taken).
    bool acquire(bool blocking = true, TimeoutArg timeout = {});
    // acquire(true, timeout).
    bool acquire(TimeoutArg timeout) { return acquire(true, timeout); }
    // Drop one level; the last one unlocks it and wakes the first waiter. Throws
    // std::logic_error if the current greenlet does not own it.
    void release();

    // True if some greenlet holds it.
    bool locked() const noexcept { return count_ > 0; }
    // True if the current greenlet holds it.
    bool is_owned() const noexcept;
    // How many times the owner has acquired it without releasing (0 when unlocked).
    int count() const noexcept { return count_; }

private:
    friend class Condition;
    int release_all();        // Condition::wait: drop every level, return how many
    void restore(int count);  // Condition::wait: take it back with `count` levels
    // The semaphore waiters queue on, under RLock's names.
    struct Block final : Semaphore {
        Block();
    };
    Block block_;
    detail::GreenletImpl* owner_ = nullptr;  // holds a reference while set
    int count_ = 0;
};

// A condition variable bound to a lock (threading.Condition): with the lock held, wait()
// releases it, blocks until notify()/notify_all() or timeout, and takes it back before
// returning, on every path (kill and Timeout included; the exception is rethrown once the lock
// is held again, so RAII guards stay correct). Notified waiters wake FIFO. A notification meant
// for a waiter that left (timeout, kill) goes to the next waiter; one sent with nobody waiting
// is lost, as with any condition variable. Also a lockable (lock/unlock/try_lock act on its
// lock), so std::unique_lock<Condition> works. Not movable. All calls belong to one thread.
class COGENT_API Condition {
public:
    // A condition with its own RLock.
    Condition();
    // A condition on `lock`, which must outlive it.
    explicit Condition(Lock& lock);
    // A condition on `lock`, which must outlive it.
    explicit Condition(RLock& lock);
    // Greenlets still waiting are woken with WaitableDestroyed: with a lock given to the
    // constructor they take it back first (it must outlive the condition); with the
    // condition's own RLock (destroyed with it) they do not.
    ~Condition();
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;

    // Release the lock, block until notified (true) or timeout (false), re-acquire the lock.
    // Throws std::logic_error if the lock is not held (by the current greenlet, for an RLock),
    // BlockingSwitchOutError on the hub, and what kill/Timeout raise (with the lock held again).
    bool wait(TimeoutArg timeout = {});
    // wait() until pred() is true or `timeout` (overall) passes; returns the last pred().
    // pred() is evaluated with the lock held. Throws what wait() throws.
    template <class Pred>
    bool wait_for(Pred pred, TimeoutArg timeout = {}) {
        using Clock = std::chrono::steady_clock;
        const auto deadline =
            timeout.forever() ? Clock::time_point::max() : detail::Deadline::after(timeout.value());
        bool result = pred();
        while (!result) {
            TimeoutArg left;
            if (!timeout.forever()) {
                auto rest = deadline - Clock::now();
                if (rest <= Clock::duration::zero()) break;
                left = TimeoutArg(rest);
            }
            wait(left);
            result = pred();
        }
        return result;
    }
    // Wake up to n waiters (FIFO). The lock must be held: throws std::logic_error otherwise,
    // std::invalid_argument if n < 0. Never switches.
    void notify(int n = 1);
    // Wake every waiter. Throws std::logic_error if the lock is not held.
    void notify_all();
    // Greenlets blocked in wait() now.
    int waiting() const noexcept { return gate_.waiting; }

    // Take the underlying lock (like its acquire()).
    bool acquire(bool blocking = true, TimeoutArg timeout = {});
    // Release the underlying lock (like its release()).
    void release();
    // acquire(); for std::unique_lock<Condition>.
    void lock() { acquire(); }
    // release().
    void unlock() { release(); }
    // acquire(false).
    bool try_lock() { return acquire(false); }

private:
    // Waiters park here; `tokens` notifications are waiting to be taken, never more than
    // there are waiters.
    struct Gate final : detail::Linkable {
        int tokens = 0;
        int waiting = 0;
        bool ready() const noexcept override { return tokens > 0; }
        Gate() noexcept { set_kind("Condition"); }
        bool wait(TimeoutArg timeout, bool* gone);
        void wake(int n);
    };
    bool owned() const noexcept;
    std::unique_ptr<RLock> own_;
    Lock* lock_ = nullptr;
    RLock* rlock_ = nullptr;
    Gate gate_;
};

}  // namespace cogent
