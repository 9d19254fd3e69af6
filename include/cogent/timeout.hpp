// Timeout: an RAII scope that interrupts the current greenlet's blocking calls, and the
// exception they raise. with_timeout() runs a function under one.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/time.hpp"

namespace cogent {

namespace detail {
class GreenletImpl;
}

// Constructed, a Timeout starts: if the greenlet that made it is still inside its scope and
// blocked when the duration passes, the Timeout (a copy that compares equal to this one) or the
// chosen exception is thrown at the blocking point. CPU-bound code is not interrupted. An absent
// duration never fires; zero fires at the next blocking call; negative durations are rejected
// (std::invalid_argument). Like gevent's Timeout it derives from BaseException, not
// std::exception, so generic `catch (const std::exception&)` does not swallow it.
// Nested timeouts tell themselves apart: `catch (const Timeout& t) { if (t != mine) throw; }`.
class COGENT_API Timeout : public BaseException {
public:
    // Start a timeout for the current greenlet.
    explicit Timeout(TimeoutArg duration);
    // Start a timeout that throws `exception` instead of itself.
    template <class E, class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, Timeout>>>
    Timeout(TimeoutArg duration, E exception)
        : Timeout(duration, std::make_exception_ptr(std::move(exception)), 0) {}
    // A copy is the thrown form: same identity, owns no timer.
    Timeout(const Timeout& other);
    Timeout& operator=(const Timeout&) = delete;
    ~Timeout() override;

    // A Timeout exception object that was never started (what get(timeout) and the like throw).
    static Timeout expired(TimeoutArg duration);

    // (Re)start the timer from now. Throws GreenletError if called from another greenlet.
    void start();
    // Stop the timer; the scope then never fires. Safe to call repeatedly.
    void cancel() noexcept;
    // True while the timer is running.
    bool pending() const noexcept;
    // The configured duration in seconds (negative means none).
    double seconds() const noexcept { return duration_.forever() ? -1.0 : duration_.seconds(); }

    friend bool operator==(const Timeout& a, const Timeout& b) noexcept { return a.id_ == b.id_; }

private:
    Timeout(TimeoutArg duration, std::exception_ptr exception, int);
    Timeout(TimeoutArg duration, bool start);
    static void on_fire(void* self);

    std::uint64_t id_;
    TimeoutArg duration_;
    std::exception_ptr exception_;
    detail::GreenletImpl* owner_ = nullptr;
    bool owns_timer_ = false;
    alignas(8) unsigned char timer_[64];  // a timer on the hub's loop (libev stays out of here)
};

// Run fn(args...) in the current greenlet under a Timeout of `duration`; the Timeout propagates.
template <class F, class... Args>
decltype(auto) with_timeout(TimeoutArg duration, F&& fn, Args&&... args) {
    Timeout t(duration);
    return std::invoke(std::forward<F>(fn), std::forward<Args>(args)...);
}

// Same, but return `timeout_value` if this timeout (not an outer one) expires.
template <class T, class F, class... Args>
auto with_timeout_or(TimeoutArg duration, T timeout_value, F&& fn, Args&&... args)
    -> std::common_type_t<T, std::invoke_result_t<F, Args...>> {
    Timeout t(duration);
    try {
        return std::invoke(std::forward<F>(fn), std::forward<Args>(args)...);
    } catch (const Timeout& e) {
        if (e != t) throw;
        return timeout_value;
    }
}

}  // namespace cogent
