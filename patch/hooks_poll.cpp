// The select family of the monkey patch: poll, ppoll, select, pselect, epoll_wait, epoll_pwait
// (and the fortified __poll_chk, __ppoll_chk). A zero timeout, and every call that is not
// cooperative, goes straight to libc. Otherwise the kernel is asked once without waiting (which
// also validates the arguments exactly as libc would), and only if nothing is ready does the
// greenlet park: on the fds themselves (cogent::poll), or on the epoll fd, which is readable
// when its set has events. The answer is then asked of the kernel again without waiting, so the
// result has the kernel's exact format (revents bits, select's fd_sets, epoll's events).
//
// Signal masks (ppoll, pselect, epoll_pwait) are not applied while the greenlet is parked:
// the mask belongs to the thread, which keeps running other greenlets.
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "cogent/exceptions.hpp"
#include "cogent/select.hpp"
#include "shim.hpp"

using namespace cogent;
using namespace cogent::patch;

namespace {

// A poll(2)-style timeout in ms: negative = forever.
TimeoutArg ms_timeout(int ms) {
    if (ms < 0) return {};
    return TimeoutArg(std::chrono::milliseconds(ms));
}

// A timespec timeout: null = forever; false when it is invalid (EINVAL).
bool ts_timeout(const timespec* ts, TimeoutArg& out) {
    if (!ts) {
        out = {};
        return true;
    }
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1'000'000'000) return false;
    out = TimeoutArg(detail::from_sec_ns(ts->tv_sec, ts->tv_nsec));  // saturated: forever
    return true;
}

// poll with a positive (or infinite) timeout, cooperatively. cogent::poll is the whole job: it
// asks the kernel once without waiting (one zero-timeout ppoll, which also rejects a bad array
// exactly as poll(2) does: -1 with EFAULT or EINVAL; POLLNVAL for bad fds) and parks only when
// nothing is ready, so a look of our own first would be a second system call for nothing.
int co_poll(pollfd* fds, nfds_t n, TimeoutArg t) {
    ErrnoKeeper ek;
    int r = cogent::poll(fds, n, t);
    return r < 0 ? r : ek.ok(r);
}

int co_select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, TimeoutArg t, bool* timed_out) {
    const Real& real = libc();
    ErrnoKeeper ek;
    if (nfds < 0) {
        errno = EINVAL;
        return -1;
    }
    // One look without waiting, on copies: validates the fds (EBADF) as the kernel would.
    fd_set r0, w0, e0;
    auto copy = [](fd_set* s, fd_set& into) -> fd_set* {
        if (!s) return nullptr;
        into = *s;
        return &into;
    };
    for (detail::Deadline dl(t);;) {
        timeval zero{0, 0};
        int n = real.select(nfds, copy(rd, r0), copy(wr, w0), copy(ex, e0), &zero);
        if (n < 0) return -1;
        if (n > 0) {
            if (rd) *rd = r0;
            if (wr) *wr = w0;
            if (ex) *ex = e0;
            return ek.ok(n);
        }
        TimeoutArg left = dl.left();
        if (left.zero()) {
            if (rd) FD_ZERO(rd);
            if (wr) FD_ZERO(wr);
            if (ex) FD_ZERO(ex);
            *timed_out = true;
            return ek.ok(0);
        }
        // Park on every fd named in the sets.
        std::vector<pollfd> pfds;
        const int top = nfds;
        for (int fd = 0; fd < top; ++fd) {
            short ev = 0;
            if (rd && FD_ISSET(fd, rd)) ev |= POLLIN;
            if (wr && FD_ISSET(fd, wr)) ev |= POLLOUT;
            if (ex && FD_ISSET(fd, ex)) ev |= POLLPRI;
            if (ev) pfds.push_back({fd, ev, 0});
        }
        if (cogent::poll(pfds.data(), pfds.size(), left) < 0) return -1;
    }
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK int poll(pollfd* fds, nfds_t n, int timeout) {
    if (timeout == 0 || !cooperative(Family::select)) return libc().poll(fds, n, timeout);
    return co_poll(fds, n, ms_timeout(timeout));
}

COGENT_HOOK int ppoll(pollfd* fds, nfds_t n, const timespec* tmo, const sigset_t* mask) {
    if ((tmo && tmo->tv_sec == 0 && tmo->tv_nsec == 0) || !cooperative(Family::select))
        return libc().ppoll(fds, n, tmo, mask);
    TimeoutArg t;
    if (!ts_timeout(tmo, t)) {
        errno = EINVAL;
        return -1;
    }
    return co_poll(fds, n, t);
}

COGENT_HOOK int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
    if ((tv && tv->tv_sec == 0 && tv->tv_usec == 0) || !cooperative(Family::select))
        return libc().select(nfds, rd, wr, ex, tv);
    TimeoutArg t;
    if (tv) {
        // As glibc's select (2.36): it keeps 32 bits of tv_usec, rejects a negative tv_sec or
        // tv_usec (EINVAL), and folds whole seconds of tv_usec into tv_sec, saturating.
        const std::int64_t sec = tv->tv_sec;
        const auto usec = std::int32_t(tv->tv_usec);
        if (sec < 0 || usec < 0) {
            errno = EINVAL;
            return -1;
        }
        t = TimeoutArg(detail::from_sec_ns(sec, std::int64_t(usec) * 1000));  // saturated: forever
    }
    const auto start = std::chrono::steady_clock::now();
    bool timed_out = false;
    int r = co_select(nfds, rd, wr, ex, t, &timed_out);
    if (tv && r >= 0 && t.value() != Duration::max()) {  // a saturated one stays as it was
        // Linux writes back the time not slept.
        auto slept = std::chrono::steady_clock::now() - start;
        auto left = timed_out ? Duration::zero()
                              : std::max(Duration::zero(),
                                         t.value() - std::chrono::duration_cast<Duration>(slept));
        tv->tv_sec = time_t(left.count() / 1'000'000'000);
        tv->tv_usec = suseconds_t((left.count() % 1'000'000'000) / 1000);
    }
    return r;
}

COGENT_HOOK int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* tmo,
                        const sigset_t* mask) {
    if ((tmo && tmo->tv_sec == 0 && tmo->tv_nsec == 0) || !cooperative(Family::select))
        return libc().pselect(nfds, rd, wr, ex, tmo, mask);
    TimeoutArg t;
    if (!ts_timeout(tmo, t)) {
        errno = EINVAL;
        return -1;
    }
    bool timed_out = false;
    return co_select(nfds, rd, wr, ex, t, &timed_out);
}

static int co_epoll(int epfd, epoll_event* ev, int max, int timeout) {
    const Real& r = libc();
    ErrnoKeeper ek;
    detail::Deadline dl(ms_timeout(timeout));
    for (;;) {
        int n = r.epoll_wait(epfd, ev, max, 0);  // also validates epfd, ev and max as the kernel
        if (n != 0) return n < 0 ? n : ek.ok(n);
        TimeoutArg left = dl.left();
        if (left.zero()) return ek.ok(0);
        try {
            // The epoll fd is readable while its ready list is not empty.
            if (!detail::shim_fd_wait(epfd, READ, left, false, "epoll_wait()", true))
                return ek.ok(0);
        } catch (const ConcurrentObjectUseError&) {
            pollfd p{epfd, POLLIN, 0};
            if (cogent::poll(&p, 1, left) < 0) return -1;
        } catch (const std::system_error& e) {
            errno = e.code().value() ? e.code().value() : EBADF;
            return -1;
        }
    }
}

COGENT_HOOK int epoll_wait(int epfd, epoll_event* ev, int max, int timeout) {
    if (timeout == 0 || !cooperative(Family::select))
        return libc().epoll_wait(epfd, ev, max, timeout);
    return co_epoll(epfd, ev, max, timeout);
}

COGENT_HOOK int epoll_pwait(int epfd, epoll_event* ev, int max, int timeout, const sigset_t* mask) {
    if (timeout == 0 || !cooperative(Family::select))
        return libc().epoll_pwait(epfd, ev, max, timeout, mask);
    return co_epoll(epfd, ev, max, timeout);
}

[[noreturn]] void __chk_fail();

COGENT_HOOK int __poll_chk(pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
    if (fdslen / sizeof(*fds) < n) __chk_fail();
    return poll(fds, n, timeout);
}

COGENT_HOOK int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* tmo, const sigset_t* mask,
                            size_t fdslen) {
    if (fdslen / sizeof(*fds) < n) __chk_fail();
    return ppoll(fds, n, tmo, mask);
}

}  // extern "C"
