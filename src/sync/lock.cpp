#include "cogent/lock.hpp"

#include <climits>
#include <stdexcept>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"

namespace cogent {

using namespace detail;

namespace {
constexpr SemaphoreNames kLockNames{"Lock", "Lock::acquire", "Lock::wait",
                                    "cogent: release unlocked lock"};
constexpr SemaphoreNames kRLockNames{"RLock", "RLock::acquire", "RLock::wait",
                                     "cogent: RLock counter overflow"};
}  // namespace

Lock::Lock() : Semaphore(1, 1, &kLockNames) {}

RLock::Block::Block() : Semaphore(1, INT_MAX, &kRLockNames) {}

// ---------------------------------------------------------------------------------------------
// RLock

RLock::RLock() = default;

RLock::~RLock() {
    if (owner_) owner_->release();
}

bool RLock::is_owned() const noexcept { return count_ > 0 && owner_ == current(); }

bool RLock::acquire(bool blocking, TimeoutArg timeout) {
    GreenletImpl* me = current();
    if (count_ > 0 && owner_ == me) {
        ++count_;
        return true;
    }
    if (!block_.acquire(blocking, timeout)) return false;
    // A strong reference: a dead owner's address must not be mistaken for a new greenlet's.
    me->add_ref();
    owner_ = me;
    count_ = 1;
    return true;
}

void RLock::release() {
    if (count_ == 0 || owner_ != current())
        throw std::logic_error(
            "cogent: cannot release un-acquired lock (RLock is owned by "
            "another greenlet, or not locked)");
    if (--count_ > 0) return;
    GreenletImpl* was = owner_;
    owner_ = nullptr;
    block_.release();
    was->release();
}

int RLock::release_all() {
    int n = count_;
    count_ = 1;
    release();
    return n;
}

void RLock::restore(int count) {
    acquire();
    count_ = count;
}

// ---------------------------------------------------------------------------------------------
// Condition

bool Condition::Gate::wait(TimeoutArg timeout, bool* gone) {
    struct Leave {
        Gate& g;
        const bool* gone;
        bool took = false;
        ~Leave() {
            if (*gone) return;  // destroyed while we waited
            --g.waiting;
            // A notification reserved for us (or for anyone, when we were the last) must not
            // outlive the waiters it was meant for: a later wait() would return at once.
            if (!took && g.tokens > g.waiting) g.tokens = g.waiting;
        }
    } leave{*this, gone};
    ++waiting;
    // run_notify wakes us synchronously right after checking tokens > 0, so the token we take
    // is still there.
    if (!park(waiters_, timeout, "Condition::wait", gone)) return false;
    --tokens;
    leave.took = true;
    return true;
}

void Condition::Gate::wake(int n) {
    int free = waiting - tokens;
    tokens += n < free ? n : free;
    notify();
}

Condition::Condition() : own_(std::make_unique<RLock>()), rlock_(own_.get()) {}
Condition::Condition(Lock& lock) : lock_(&lock) {}
Condition::Condition(RLock& lock) : rlock_(&lock) {}
Condition::~Condition() = default;

bool Condition::owned() const noexcept {
    // A plain Lock has no owner: "held" is the best we can check (threading does the same).
    return rlock_ ? rlock_->is_owned() : lock_->counter() <= 0;
}

bool Condition::acquire(bool blocking, TimeoutArg timeout) {
    return rlock_ ? rlock_->acquire(blocking, timeout) : lock_->acquire(blocking, timeout);
}

void Condition::release() {
    if (rlock_)
        rlock_->release();
    else
        lock_->release();
}

bool Condition::wait(TimeoutArg timeout) {
    if (!owned()) throw std::logic_error("cogent: cannot wait on un-acquired lock");
    // Checked before the lock is dropped: on the hub we could never block to take it back.
    check_may_block("Condition::wait");
    // Releasing never switches, so no notify() can slip in between the release and the park.
    int levels = 1;
    if (rlock_)
        levels = rlock_->release_all();
    else
        lock_->release();
    // Copies: if the condition is destroyed while we wait, `this` must not be touched again.
    Lock* const lock = lock_;
    RLock* const rlock = rlock_;
    const bool own_lock = own_ != nullptr;
    bool gone = false;
    bool notified = false;
    std::exception_ptr error;
    try {
        notified = gate_.wait(timeout, &gone);
    } catch (...) {
        error = std::current_exception();
    }
    // Destroyed under us: its own RLock went with it (nothing to take back); a lock given to
    // the constructor outlives it and is taken back below, as on every other path.
    if (gone && own_lock) std::rethrow_exception(error);
    // Take the lock back whatever happens: the caller's guard will release it. A kill or a
    // Timeout arriving meanwhile is remembered and rethrown (the first one) once we hold it.
    // Errors of misuse (std::logic_error: wrong thread, ...) would repeat forever: let them out.
    for (;;) {
        try {
            if (rlock)
                rlock->restore(levels);
            else
                lock->acquire();
            break;
        } catch (const std::logic_error&) {
            throw;
        } catch (...) {
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
    return notified;
}

void Condition::notify(int n) {
    if (n < 0) throw std::invalid_argument("cogent: Condition::notify(n) needs n >= 0");
    if (!owned()) throw std::logic_error("cogent: cannot notify on un-acquired lock");
    if (n > 0) gate_.wake(n);
}

void Condition::notify_all() {
    if (!owned()) throw std::logic_error("cogent: cannot notify on un-acquired lock");
    gate_.wake(gate_.waiting);
}

}  // namespace cogent
