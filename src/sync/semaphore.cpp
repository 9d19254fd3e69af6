#include "cogent/semaphore.hpp"

#include <climits>
#include <stdexcept>
#include <string>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"

namespace cogent {

using namespace detail;

namespace {
int checked_value(int value) {
    if (value < 0)
        throw std::invalid_argument("cogent: semaphore initial value must be >= 0 (got " +
                                    std::to_string(value) + ")");
    return value;
}
constexpr SemaphoreNames kSemaphoreNames{"Semaphore", "Semaphore::acquire", "Semaphore::wait",
                                         "cogent: Semaphore counter overflow"};
constexpr SemaphoreNames kBoundedNames{"BoundedSemaphore", "BoundedSemaphore::acquire",
                                       "BoundedSemaphore::wait",
                                       "cogent: BoundedSemaphore released too many times"};
}  // namespace

Semaphore::Semaphore(int value) : Semaphore(value, INT_MAX, &kSemaphoreNames) {}

Semaphore::Semaphore(int value, int bound, const SemaphoreNames* names)
    : Linkable(true), counter_(checked_value(value)), bound_(bound), names_(names) {
    set_kind(names->kind);
}

BoundedSemaphore::BoundedSemaphore(int value) : Semaphore(value, value, &kBoundedNames) {}

bool Semaphore::acquire(bool blocking, TimeoutArg timeout) {
    check_thread(names_->acquire);  // throws before touching the count
    // Fairness: a permit released while greenlets are queued belongs to them (their wake-up
    // callback is already scheduled), so the fast path is only for an empty queue.
    if (counter_ > 0 && acquirers_ == 0) {
        --counter_;
        return true;
    }
    if (!blocking || timeout.zero()) return false;
    // Make sure a scheduled wake-up exists if permits are already waiting for the queue head
    // (notify() is a no-op when one is pending).
    if (counter_ > 0) notify();
    bool gone = false;  // set if we are destroyed while it waits: then touch nothing
    struct Count {
        int& n;
        const bool& gone;
        Count(int& c, const bool& g) : n(c), gone(g) { ++n; }
        ~Count() {
            if (!gone) --n;
        }
    } queued(acquirers_, gone);
    // park() returns true only from run_notify, which wakes us synchronously after checking
    // ready() (counter_ > 0): nothing can take the permit between the check and us. On every
    // other exit (timeout, kill, Timeout) we took nothing, and run_notify (this round, the next
    // one it schedules while a permit is left, or the one the next release() schedules) hands
    // the permit to the next waiter.
    if (!park(waiters_, timeout, names_->acquire, &gone)) return false;
    --counter_;
    return true;
}

int Semaphore::release() {
    check_thread("Semaphore::release");  // throws before touching the count
    if (counter_ >= bound_) {
        if (bound_ == INT_MAX) throw std::overflow_error(names_->over_release);
        throw std::logic_error(names_->over_release);
    }
    ++counter_;
    notify();
    return counter_;
}

int Semaphore::wait(TimeoutArg timeout) {
    check_thread(names_->wait);
    if (counter_ > 0) return counter_;
    wait_ready(timeout, names_->wait);
    return counter_;
}

}  // namespace cogent
