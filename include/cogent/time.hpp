// Durations and timeout arguments used across the API.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ratio>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "cogent/detail/export.hpp"

namespace cogent {

using Duration = std::chrono::nanoseconds;

namespace detail {

[[noreturn]] inline void duration_is_nan(const std::string& what) {
    throw std::invalid_argument("cogent: " + what + ": the duration is NaN");
}

// Any std::chrono duration as a Duration, rounded up (a tiny positive duration never becomes
// zero) and saturated: beyond what the clock can express (about 292 years) it is Duration::max()
// (below, Duration::min()), never a wrapped-around value. The range check is done in long double,
// so floating-point durations up to infinity are safe. NaN: std::invalid_argument naming `what`.
template <class Rep, class Period>
Duration saturate(std::chrono::duration<Rep, Period> d, const char* what) {
    using R = std::ratio_divide<Period, std::nano>;  // ns per tick
    constexpr auto max = Duration::max().count();
    if constexpr (std::is_integral_v<Rep> && R::den == 1) {
        // Whole nanoseconds per tick: exact.
        constexpr auto lim = max / R::num;
        if (std::cmp_greater(d.count(), lim)) return Duration::max();
        if (std::cmp_less(d.count(), -lim)) return Duration::min();
        return Duration(static_cast<std::int64_t>(d.count()) * R::num);
    } else {
        if constexpr (!std::is_integral_v<Rep>)
            if (d.count() != d.count()) duration_is_nan(what);
        const long double ns = static_cast<long double>(d.count()) * R::num / R::den;
        if (ns >= static_cast<long double>(max)) return Duration::max();
        if (ns <= static_cast<long double>(Duration::min().count())) return Duration::min();
        return Duration(static_cast<std::int64_t>(std::ceil(ns)));
    }
}

// a + b without overflow: Duration::max() (min()) when it would be longer (shorter).
inline Duration saturating_add(Duration a, Duration b) noexcept {
    std::int64_t r;
    if (__builtin_add_overflow(a.count(), b.count(), &r))
        return b.count() > 0 ? Duration::max() : Duration::min();
    return Duration(r);
}
template <class Clock>
std::chrono::time_point<Clock, Duration> saturating_add(std::chrono::time_point<Clock, Duration> t,
                                                        Duration d) noexcept {
    return std::chrono::time_point<Clock, Duration>(saturating_add(t.time_since_epoch(), d));
}

// A timespec/timeval-style (seconds, nanoseconds) pair as a Duration, saturated as above. The
// caller validates the ranges it cares about (as the kernel does); nothing here overflows.
inline Duration from_sec_ns(std::int64_t sec, std::int64_t nsec) noexcept {
    constexpr std::int64_t G = 1'000'000'000;
    std::int64_t ns;
    if (__builtin_mul_overflow(sec, G, &ns)) return sec > 0 ? Duration::max() : Duration::min();
    return saturating_add(Duration(ns), Duration(nsec));
}

}  // namespace detail

// A timeout argument: absent (wait forever, the default), zero (do not block) or positive.
// Accepts any std::chrono duration, including floating-point ones such as 0.5s; a negative
// duration or NaN is rejected with std::invalid_argument naming the call site. One longer than
// the clock can express (hours::max(), years(1000), infinity) is Duration::max(): about 292
// years, in effect forever, never "now".
class COGENT_API TimeoutArg {
public:
    constexpr TimeoutArg() noexcept = default;
    constexpr TimeoutArg(std::nullopt_t) noexcept {}
    template <class Rep, class Period>
    TimeoutArg(std::chrono::duration<Rep, Period> d,
               std::source_location where = std::source_location::current()) {
        if constexpr (!std::is_integral_v<Rep>)
            if (d.count() != d.count()) detail::duration_is_nan("timeout at " + place(where));
        if (d < std::chrono::duration<Rep, Period>::zero())
            throw std::invalid_argument(
                "cogent: timeout must not be negative (got " +
                std::to_string(static_cast<double>(std::chrono::duration<long double>(d).count())) +
                " s at " + place(where) + ")");
        value_ = detail::saturate(d, "timeout");
    }
    template <class Rep, class Period>
    TimeoutArg(std::optional<std::chrono::duration<Rep, Period>> d,
               std::source_location where = std::source_location::current())
        : TimeoutArg(d ? TimeoutArg(*d, where) : TimeoutArg()) {}

    // True when no timeout was given: wait forever.
    bool forever() const noexcept { return !value_.has_value(); }
    // True for a zero timeout: do not block.
    bool zero() const noexcept { return value_ && value_->count() == 0; }
    // The duration; only meaningful when !forever().
    Duration value() const noexcept { return value_.value_or(Duration::zero()); }
    double seconds() const noexcept { return std::chrono::duration<double>(value()).count(); }

private:
    static std::string place(const std::source_location& w) {
        return std::string(w.file_name()) + ":" + std::to_string(w.line());
    }
    std::optional<Duration> value_;
};

namespace detail {

// A point in time a sequence of waits must end by; left() turns it back into a TimeoutArg for
// each (re)park. Shared by every primitive that may park more than once per call.
class COGENT_INTERNAL_API Deadline {
public:
    using Clock = std::chrono::steady_clock;
    explicit Deadline(TimeoutArg t) : forever_(t.forever()) {
        if (!forever_) at_ = after(t.value());
    }
    // now + d, saturated: a huge d gives a point that never comes, not one in the past.
    static Clock::time_point after(Duration d) noexcept {
        return saturating_add(std::chrono::time_point_cast<Duration>(Clock::now()), d);
    }
    // The time left: absent for no deadline, zero once it passed.
    TimeoutArg left() const {
        if (forever_) return {};
        auto d = at_ - Clock::now();
        return d <= d.zero() ? TimeoutArg(Duration::zero()) : TimeoutArg(d);
    }

private:
    Clock::time_point at_{};
    bool forever_;
};

}  // namespace detail

}  // namespace cogent
