// The standard Lockable/TimedLockable member functions, for any class with acquire(bool,
// TimeoutArg) and release(): what lets std::lock_guard and std::unique_lock hold our locks.
#pragma once

#include <chrono>

#include "cogent/time.hpp"

namespace cogent::detail {

template <class Derived>
class StdLockable {
public:
    // acquire(); for std::lock_guard / std::unique_lock.
    void lock() { self().acquire(true, TimeoutArg()); }
    // release().
    void unlock() { self().release(); }
    // acquire(false).
    bool try_lock() { return self().acquire(false, TimeoutArg()); }
    // acquire(true, d); a zero or negative d does not block.
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> d) {
        if (d <= std::chrono::duration<Rep, Period>::zero()) return try_lock();
        return self().acquire(true, TimeoutArg(d));
    }
    // acquire until the time point `t` of any clock.
    template <class Clock, class Dur>
    bool try_lock_until(std::chrono::time_point<Clock, Dur> t) {
        // Compared first: t - now overflows for time_point::min() (a wrapped "forever").
        const auto now = Clock::now();
        if (t <= now) return try_lock();
        return try_lock_for(t - now);
    }

private:
    StdLockable() = default;  // only as the base of Derived
    friend Derived;
    Derived& self() { return static_cast<Derived&>(*this); }
};

}  // namespace cogent::detail
