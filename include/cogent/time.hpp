// Durations and timeout arguments used across the API.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

namespace cogent {

using Duration = std::chrono::nanoseconds;

// A timeout argument: absent (wait forever, the default), zero (do not block) or positive.
// Accepts any std::chrono duration, including floating-point ones such as 0.5s; a negative
// duration is rejected with std::invalid_argument at the call site.
class TimeoutArg {
public:
    constexpr TimeoutArg() noexcept = default;
    constexpr TimeoutArg(std::nullopt_t) noexcept {}
    template <class Rep, class Period>
    TimeoutArg(std::chrono::duration<Rep, Period> d) {
        if (d < std::chrono::duration<Rep, Period>::zero())
            throw std::invalid_argument("cogent: timeout must not be negative (got " +
                                        std::to_string(std::chrono::duration<double>(d).count()) +
                                        " s)");
        auto ns = std::chrono::duration_cast<Duration>(d);
        // Round a tiny positive duration up so it never collapses to "do not block".
        if (ns == Duration::zero() && d > std::chrono::duration<Rep, Period>::zero())
            ns = Duration(1);
        value_ = ns;
    }
    template <class Rep, class Period>
    TimeoutArg(std::optional<std::chrono::duration<Rep, Period>> d)
        : TimeoutArg(d ? TimeoutArg(*d) : TimeoutArg()) {}

    // True when no timeout was given: wait forever.
    bool forever() const noexcept { return !value_.has_value(); }
    // True for a zero timeout: do not block.
    bool zero() const noexcept { return value_ && value_->count() == 0; }
    // The duration; only meaningful when !forever().
    Duration value() const noexcept { return value_.value_or(Duration::zero()); }
    double seconds() const noexcept { return std::chrono::duration<double>(value()).count(); }

private:
    std::optional<Duration> value_;
};

namespace detail {

// A point in time a sequence of waits must end by; left() turns it back into a TimeoutArg for
// each (re)park. Shared by every primitive that may park more than once per call.
class Deadline {
public:
    explicit Deadline(TimeoutArg t) : forever_(t.forever()) {
        if (!forever_) at_ = std::chrono::steady_clock::now() + t.value();
    }
    // The time left: absent for no deadline, zero once it passed.
    TimeoutArg left() const {
        if (forever_) return {};
        auto d = at_ - std::chrono::steady_clock::now();
        return d <= d.zero() ? TimeoutArg(Duration::zero()) : TimeoutArg(d);
    }

private:
    std::chrono::steady_clock::time_point at_{};
    bool forever_;
};

}  // namespace detail

}  // namespace cogent
