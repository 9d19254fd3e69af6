// The time family of the monkey patch: sleep, usleep, nanosleep, clock_nanosleep
// (std::this_thread::sleep_for calls nanosleep). In a greenlet they park on the hub's timer;
// the arguments are checked as the kernel checks them first. A cooperative sleep is never cut
// short by a signal, so `rem` is left untouched (it is only written on EINTR).
#include <cerrno>
#include <chrono>

#include "cogent/hub.hpp"
#include "shim.hpp"

using namespace cogent;
using namespace cogent::patch;

namespace {

bool valid(const timespec* ts) {
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1'000'000'000;
}

// Saturated: a timespec beyond what a Duration holds (~292 years) is Duration::max(), which the
// kernel too treats as forever (it clamps to KTIME_MAX), never a wrapped negative "now".
Duration to_duration(const timespec& ts) { return detail::from_sec_ns(ts.tv_sec, ts.tv_nsec); }

// cogent::sleep with the caller's errno kept.
void co_sleep(Duration d) {
    int saved = errno;
    cogent::sleep(d);
    errno = saved;
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK unsigned sleep(unsigned seconds) {
    if (!cooperative(Family::time)) return libc().sleep(seconds);
    co_sleep(std::chrono::seconds(seconds));
    return 0;
}

COGENT_HOOK int usleep(useconds_t usec) {
    if (!cooperative(Family::time)) return libc().usleep(usec);
    co_sleep(std::chrono::microseconds(usec));
    return 0;
}

COGENT_HOOK int nanosleep(const timespec* req, timespec* rem) {
    if (!cooperative(Family::time) || !req) return libc().nanosleep(req, rem);  // null: EFAULT
    if (!valid(req)) {
        errno = EINVAL;
        return -1;
    }
    co_sleep(to_duration(*req));
    return 0;
}

COGENT_HOOK int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
    // Only the clocks a timer can be computed for here; the CPU-time clocks and unknown ids get
    // libc's own answer (EINVAL, ENOTSUP).
    const bool known = clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC ||
                       clock == CLOCK_BOOTTIME || clock == CLOCK_TAI;
    if (!cooperative(Family::time) || !known || !req || (flags & ~TIMER_ABSTIME))
        return libc().clock_nanosleep(clock, flags, req, rem);
    if (!valid(req)) return EINVAL;  // clock_nanosleep returns the error, errno untouched
    Duration d = to_duration(*req);
    if ((flags & TIMER_ABSTIME) && d != Duration::max()) {  // a saturated end never comes
        timespec now{};
        clock_gettime(clock, &now);
        d -= to_duration(now);
        if (d < Duration::zero()) d = Duration::zero();
    }
    co_sleep(d);
    return 0;
}

}  // extern "C"
