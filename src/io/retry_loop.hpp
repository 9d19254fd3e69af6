// The I/O retry loop itself, for any fd layer: make a non-blocking call; when the kernel says
// EAGAIN, park on the fd and make it again. Written once, used twice: retry_io (retry_io.hpp:
// the runtime's fd table read inline) and detail::shim::retry_io (services/shim_api.hpp: the
// patch shim, which must not see the fd table and goes through exported functions). Both are
// this template with their own Hint and Park; the code the compiler emits is the same.
// Header-only, and it includes nothing of src/: the shim may compile it.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>

#include "cogent/io.hpp"  // READ, WRITE
#include "cogent/time.hpp"

namespace cogent::detail {

// The time one I/O call may spend waiting in all, however many times it parks (a partial send,
// a wake with nothing to read): absent (forever), zero (never wait: the call's EAGAIN is its
// answer) or positive. The clock is read only for a positive timeout, and only from the moment
// the call first has to wait (the first left()): a call that never parks pays nothing for it.
// Shared by several retry_io calls that make up one operation (Pipe::recv), and with the
// waits around them (Pipe's locks).
class IoDeadline {
public:
    explicit IoDeadline(TimeoutArg t) noexcept : t_(t) {}
    bool zero() const noexcept { return t_.zero(); }
    // The time left: the whole timeout on the first call (which starts the clock), zero once it
    // has passed.
    TimeoutArg left() {
        if (t_.forever() || t_.zero()) return t_;
        if (!started_) {
            dl_ = Deadline(t_);
            started_ = true;
            return t_;
        }
        return dl_.left();
    }

private:
    TimeoutArg t_;
    Deadline dl_{TimeoutArg()};  // set by the first left()
    bool started_ = false;
};

// How a retry_io call ended: n >= 0 is the attempt's result; n < 0 failed, with err the
// attempt's errno (EAGAIN when the deadline was zero: the call would have blocked), or with err
// 0 when it parked and the deadline passed (timed_out()).
struct IoResult {
    ssize_t n;
    int err;
    bool timed_out() const noexcept { return n < 0 && err == 0; }
};

// What retry_io may assume about the fd.
struct IoOpts {
    // The fd's owner closes it only through notify_closing (a Socket; the shim, which sees every
    // close). Reads then park with keep_read and use the readiness hint (fd_may_read: skip a
    // read that would say EAGAIN; fd_drained after one that did), and every wait is known_open
    // (fdwait.hpp). Otherwise (any fd, which may be closed behind cogent's back) none of that.
    bool owned = false;
    // Owned reads: a result of 1..want-1 bytes (a short read) drained the fd, as an EAGAIN does.
    // 0: the size says nothing (a peek, a datagram, an iovec whose total is not at hand).
    std::size_t want = 0;
};

// Makes attempt() (a system call on fd: >= 0 done, -1 with errno) until it is done, fails with
// an errno other than EAGAIN / EWOULDBLOCK, or the deadline passes; EINTR retries at once.
// After an EAGAIN it parks on fd for `events` (READ or WRITE) for at most deadline.left() (with
// the time gone, the park still asks the kernel once whether fd is ready); a zero deadline never
// parks. An attempt that makes progress and needs another call (a partial send) loops inside
// itself and keeps its progress in the caller's variables: the loop repeats only the attempt
// that said EAGAIN. `what` names the wait in errors.
// Hint: static bool may_read(int fd) and static void drained(int fd), the read-readiness hint
// of an owned fd (fdwait.hpp's fd_may_read / fd_drained).
// park(fd, events, left, keep_read, what, known_open): > 0 ready, 0 the time ran out, < 0
// failed with errno set (the result is then {-1, errno}); it may also throw (a kill, a Timeout,
// a close of the fd by another greenlet, a second waiter).
template <class Hint, class Attempt, class Park>
inline IoResult retry_loop(Attempt&& attempt, int fd, int events, IoDeadline& deadline,
                           const char* what, IoOpts opts, Park&& park) {
    const bool hint = opts.owned && events == READ;
    // The hint may skip an attempt only for a caller that would wait anyway.
    bool try_now = !hint || deadline.zero() || Hint::may_read(fd);
    for (;;) {
        if (try_now) {
            ssize_t r = attempt();
            if (r >= 0) {
                if (hint && r > 0 && std::size_t(r) < opts.want) Hint::drained(fd);
                return {r, 0};
            }
            const int e = errno;
            if (e == EINTR) continue;
            if (e != EAGAIN && e != EWOULDBLOCK) return {-1, e};
            if (hint) Hint::drained(fd);
            if (deadline.zero()) return {-1, e};
        }
        try_now = true;
        const int ready = park(fd, events, deadline.left(), hint, what, opts.owned);
        if (ready < 0) return {-1, errno};
        if (ready == 0) return {-1, 0};
    }
}

}  // namespace cogent::detail
