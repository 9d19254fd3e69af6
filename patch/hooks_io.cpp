// The socket family of the monkey patch: socket calls, read/write and friends, close/dup,
// fcntl/ioctl/setsockopt (which the shim watches to know the user's O_NONBLOCK and timeouts).
//
// How a blocking call is made cooperative without changing anything the user can see:
//   - sockets are never switched to O_NONBLOCK behind the user's back: each attempt passes
//     MSG_DONTWAIT (read/write/readv/writev on a socket become recv/send/recvmsg/sendmsg with
//     it), so F_GETFL keeps reporting the user's own flags;
//   - when the kernel says EAGAIN, the user's O_NONBLOCK (or FIONBIO, or SOCK_NONBLOCK) decides:
//     set, the EAGAIN is returned at once; clear, the greenlet parks on the fd
//     (detail::shim_fd_wait) for at most SO_RCVTIMEO / SO_SNDTIMEO, and a timeout ends as the
//     kernel ends it (EAGAIN, or EINPROGRESS for connect);
//   - pipes, FIFOs, terminals and the anon-inode fds (eventfd, timerfd, signalfd, epoll...)
//     have no per-call flag: the hook waits until poll(2) says ready, then makes the call;
//   - regular files, directories and block devices are always "ready": straight to libc;
//   - connect on a blocking socket is the one place flags change: O_NONBLOCK is set for the
//     connect(2) call itself and restored at once, before the greenlet parks.
// errno is the caller's on success (the EAGAIN attempts leave no trace) and libc's on failure.
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <vector>

#include "cogent/exceptions.hpp"
#include "cogent/io.hpp"
#include "cogent/select.hpp"
#include "shim.hpp"

using namespace cogent;
using namespace cogent::patch;

namespace {

// ---- what the shim knows about an fd ------------------------------------------------------------

FdKind kind_of(int fd) noexcept {
    FdInfo* f = fd_info(fd);
    if (f)
        if (auto k = f->kind.load(std::memory_order_relaxed)) return FdKind(k);
    int saved = errno;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        errno = saved;
        return FdKind::passthrough;  // not open: libc's call reports EBADF
    }
    FdKind k;
    switch (st.st_mode & S_IFMT) {
        case S_IFSOCK:
            k = FdKind::socket;
            break;
        case S_IFIFO:
            k = FdKind::pollable;
            break;
        case S_IFCHR: {
            termios t{};  // a terminal blocks; /dev/null, /dev/zero... never do
            k = libc().ioctl(fd, TCGETS, &t) == 0 ? FdKind::pollable : FdKind::passthrough;
            break;
        }
        case 0:
            k = FdKind::pollable;
            break;  // anon inodes: eventfd, timerfd, epoll, pidfd...
        default:
            k = FdKind::passthrough;  // regular files, directories, block devices
    }
    errno = saved;
    if (f) f->kind.store(std::uint8_t(k), std::memory_order_relaxed);
    return k;
}

bool user_nonblock(int fd) noexcept {
    FdInfo* f = fd_info(fd);
    if (f)
        if (auto v = f->nonblock.load(std::memory_order_relaxed); v >= 0) return v;
    int saved = errno;
    int fl = libc().fcntl(fd, F_GETFL);
    errno = saved;
    bool nb = fl >= 0 && (fl & O_NONBLOCK);
    if (f && fl >= 0) f->nonblock.store(nb, std::memory_order_relaxed);
    return nb;
}

// SO_RCVTIMEO / SO_SNDTIMEO as a timeout for the whole call (absent when not set).
TimeoutArg sock_timeout(int fd, bool send) noexcept {
    FdInfo* f = fd_info(fd);
    std::int64_t ns = -1;
    if (f) ns = (send ? f->sndtimeo_ns : f->rcvtimeo_ns).load(std::memory_order_relaxed);
    if (ns < 0) {
        int saved = errno;
        timeval tv{};
        socklen_t len = sizeof tv;
        ns = libc().getsockopt(fd, SOL_SOCKET, send ? SO_SNDTIMEO : SO_RCVTIMEO, &tv, &len) == 0
                 ? detail::from_sec_ns(tv.tv_sec, std::int64_t(tv.tv_usec) * 1000).count()
                 : 0;
        errno = saved;
        if (f) (send ? f->sndtimeo_ns : f->rcvtimeo_ns).store(ns, std::memory_order_relaxed);
    }
    if (ns <= 0) return {};
    return TimeoutArg(Duration(ns));
}

void note_new_fd(int fd, FdKind kind, int nonblock) noexcept {
    fd_forget(fd);
    if (FdInfo* f = fd_info(fd)) {
        f->kind.store(std::uint8_t(kind), std::memory_order_relaxed);
        f->nonblock.store(std::int8_t(nonblock), std::memory_order_relaxed);
        if (kind == FdKind::socket) {
            f->rcvtimeo_ns.store(0, std::memory_order_relaxed);
            f->sndtimeo_ns.store(0, std::memory_order_relaxed);
        }
    }
}

// The table said "socket" but the kernel says ENOTSOCK: the number was closed where no hook saw
// it (glibc's own fclose) and reused by a call the shim does not watch (open, eventfd...).
// Forget it, so the caller's retry classifies the fd afresh; true if there was a stale entry.
bool stale(int fd) noexcept {
    FdInfo* f = fd_info(fd);
    if (!f || f->kind.load(std::memory_order_relaxed) != std::uint8_t(FdKind::socket)) return false;
    fd_forget(fd);
    int saved = errno;
    struct stat st {};
    const bool not_socket = ::fstat(fd, &st) == 0 && !S_ISSOCK(st.st_mode);
    errno = saved;
    return not_socket;
}

// Wake greenlets of this thread waiting on fd (EBADF) and drop its watchers before the number
// can be reused. Runs for every close, cooperative or not: a thread with a hub may have parked
// greenlets on an fd that another of its non-greenlet paths closes.
void closing(int fd) noexcept {
    if (detail::shim_thread_has_hub()) notify_closing(fd);
    fd_forget(fd);
}

// ---- parking ------------------------------------------------------------------------------------

// Park until fd is ready for `events` or `left` passes: 1 ready, 0 timed out, -1 with errno set
// (EBADF: closed meanwhile). A kill or Timeout (cogent::BaseException) propagates: it is how a
// killed greenlet leaves the call. keep: leave the read watcher armed (sockets only; their
// closes all come through closing()).
int park(int fd, int events, TimeoutArg left, bool keep, const char* what) {
    if (left.zero()) return 0;
    try {
        return detail::shim_fd_wait(fd, events, left, keep, what, true) ? 1 : 0;
    } catch (const ConcurrentObjectUseError&) {
        // Another greenlet already waits on fd in this direction (two greenlets reading one
        // socket through a C library): wait through poll, which any number may share.
        pollfd p{fd, short((events & READ ? POLLIN : 0) | (events & WRITE ? POLLOUT : 0)), 0};
        int n = cogent::poll(&p, 1, left);
        if (n < 0) return -1;
        if (n > 0 && (p.revents & POLLNVAL)) {
            errno = EBADF;
            return -1;
        }
        return n > 0 ? 1 : 0;
    } catch (const std::system_error& e) {
        errno = e.code().value() ? e.code().value() : EBADF;
        return -1;
    } catch (const std::exception&) {
        errno = EBADF;
        return -1;
    }
}

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

// ---- sockets: receive ---------------------------------------------------------------------------

// retry_io's parking step for the shim: park() above (errno instead of exceptions; poll when
// another greenlet already waits on the fd in that direction). Every wait is known_open.
struct ShimPark {
    int operator()(int fd, int events, TimeoutArg left, bool keep, const char* what, bool) const {
        return park(fd, events, left, keep, what);
    }
};

// The shim's socket reads and writes are detail::shim::retry_io (shim_api.hpp), with the fd `owned`
// (every close comes through closing()): a read keeps its watcher armed and uses the readiness
// hint. want: the bytes asked for (0: unknown). A short read means the socket is most likely
// drained (as Socket::recv reasons): the next call parks at once instead of trying a recv that
// would say EAGAIN. Safe even when wrong: the read watcher stays armed, level-triggered, and fires
// at once for data already there.
template <class Attempt>
ssize_t co_recv_loop(int fd, const char* what, Attempt attempt, size_t want = 0) {
    // The user's non-blocking socket gets the kernel's answer, always (the readiness hint may
    // skip an attempt, which only a caller that will wait anyway can afford).
    if (user_nonblock(fd)) return attempt();
    ErrnoKeeper ek;
    detail::shim::IoDeadline dl(sock_timeout(fd, false));
    const detail::shim::IoResult r = detail::shim::retry_io(
        attempt, fd, READ, dl, what, {.owned = true, .want = want}, ShimPark{});
    if (r.n >= 0) return ek.ok(r.n);
    errno = r.timed_out() ? EAGAIN : r.err;  // SO_RCVTIMEO expired: EAGAIN, as the kernel says
    return -1;
}

ssize_t co_recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen,
                    const char* what) {
    const Real& r = libc();
    if (flags & MSG_DONTWAIT) return r.recvfrom(fd, buf, n, flags, from, fromlen);
    if (!(flags & MSG_WAITALL) || n == 0)
        return co_recv_loop(
            fd, what, [&] { return r.recvfrom(fd, buf, n, flags | MSG_DONTWAIT, from, fromlen); },
            (flags & MSG_PEEK) ? 0 : n);
    // MSG_WAITALL: until n bytes, the end of the stream, an error, or the timeout.
    size_t got = 0;
    ErrnoKeeper ek;
    while (got < n) {
        ssize_t k = co_recv_loop(fd, what, [&] {
            return r.recvfrom(fd, static_cast<char*>(buf) + got, n - got,
                              (flags & ~MSG_WAITALL) | MSG_DONTWAIT, from, fromlen);
        });
        if (k < 0) return got ? ek.ok(ssize_t(got)) : -1;
        if (k == 0) break;
        got += size_t(k);
    }
    return ek.ok(ssize_t(got));
}

ssize_t co_recvmsg(int fd, msghdr* msg, int flags) {
    const Real& r = libc();
    if (flags & MSG_DONTWAIT) return r.recvmsg(fd, msg, flags);
    return co_recv_loop(fd, "recvmsg()", [&] { return r.recvmsg(fd, msg, flags | MSG_DONTWAIT); });
}

// ---- sockets: send ------------------------------------------------------------------------------

// A blocking send on a stream socket sends everything (parking while the buffer is full);
// a datagram goes whole or not at all. Partial progress is returned if an error or the
// SO_SNDTIMEO timeout comes after some bytes went, as the kernel does. attempt(sent) sends
// what is left after `sent` bytes.
template <class Attempt>
ssize_t co_send_loop(int fd, size_t total, const char* what, Attempt attempt) {
    ErrnoKeeper ek;
    // The user's non-blocking socket: one pass, its EAGAIN returned.
    detail::shim::IoDeadline dl(user_nonblock(fd) ? TimeoutArg(Duration::zero())
                                                  : sock_timeout(fd, true));
    size_t sent = 0;
    const detail::shim::IoResult r = detail::shim::retry_io(
        [&]() -> ssize_t {
            for (;;) {
                ssize_t k = attempt(sent);
                if (k < 0) return -1;
                sent += size_t(k);
                if (sent >= total) return ssize_t(sent);
                // A partial write: the buffer is full now, the next attempt says so.
            }
        },
        fd, WRITE, dl, what, {.owned = true}, ShimPark{});
    if (r.n >= 0 || sent) return ek.ok(ssize_t(sent));
    errno = r.timed_out() ? EAGAIN : r.err;  // SO_SNDTIMEO expired: EAGAIN
    return -1;
}

ssize_t co_sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen,
                  const char* what) {
    const Real& r = libc();
    if (flags & MSG_DONTWAIT) return r.sendto(fd, buf, n, flags, to, tolen);
    return co_send_loop(fd, n, what, [&](size_t sent) {
        return r.sendto(fd, static_cast<const char*>(buf) + sent, n - sent, flags | MSG_DONTWAIT,
                        to, tolen);
    });
}

// The iovec array after skipping `skip` bytes (for a partial sendmsg/writev).
std::vector<iovec> advance(const iovec* iov, int cnt, size_t skip) {
    std::vector<iovec> out;
    for (int i = 0; i < cnt; ++i) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        out.push_back({static_cast<char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip});
        skip = 0;
    }
    return out;
}

size_t iov_total(const iovec* iov, int cnt) {
    size_t t = 0;
    for (int i = 0; i < cnt; ++i) t += iov[i].iov_len;
    return t;
}

ssize_t co_sendmsg(int fd, const msghdr* msg, int flags) {
    const Real& r = libc();
    if (flags & MSG_DONTWAIT) return r.sendmsg(fd, msg, flags);
    const size_t total = iov_total(msg->msg_iov, int(msg->msg_iovlen));
    return co_send_loop(fd, total == 0 ? 1 : total, "sendmsg()", [&](size_t sent) -> ssize_t {
        if (sent == 0) {
            ssize_t k = r.sendmsg(fd, msg, flags | MSG_DONTWAIT);
            return total == 0 && k == 0 ? 1 : k;  // an empty message counts as done
        }
        // The rest of a partly sent stream message (ancillary data went with the first part).
        std::vector<iovec> rest = advance(msg->msg_iov, int(msg->msg_iovlen), sent);
        msghdr m{};
        m.msg_iov = rest.data();
        m.msg_iovlen = rest.size();
        return r.sendmsg(fd, &m, flags | MSG_DONTWAIT);
    });
}

// ---- pipes, terminals, anon inodes --------------------------------------------------------------

// Wait until poll(2) says fd is ready for `events`, then the caller makes its blocking call.
// 1 ready, -1 with errno.
int wait_pollable(int fd, int events, const char* what) {
    const short want = events == READ ? POLLIN : POLLOUT;
    for (;;) {
        pollfd p{fd, want, 0};
        int saved = errno;
        int n = libc().poll(&p, 1, 0);
        errno = saved;
        if (n != 0) return 1;  // ready, hung up, in error, or invalid: the call itself reports
        int k = park(fd, events, {}, false, what);
        if (k < 0) return -1;
    }
}

}  // namespace

// ---- the hooks ----------------------------------------------------------------------------------

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK int socket(int domain, int type, int protocol) {
    int fd = libc().socket(domain, type, protocol);
    if (fd >= 0) note_new_fd(fd, FdKind::socket, (type & SOCK_NONBLOCK) ? 1 : 0);
    return fd;
}

COGENT_HOOK int socketpair(int domain, int type, int protocol, int sv[2]) {
    int r = libc().socketpair(domain, type, protocol, sv);
    if (r == 0) {
        note_new_fd(sv[0], FdKind::socket, (type & SOCK_NONBLOCK) ? 1 : 0);
        note_new_fd(sv[1], FdKind::socket, (type & SOCK_NONBLOCK) ? 1 : 0);
    }
    return r;
}

COGENT_HOOK int pipe(int fds[2]) {
    int r = libc().pipe(fds);
    if (r == 0) {
        note_new_fd(fds[0], FdKind::pollable, 0);
        note_new_fd(fds[1], FdKind::pollable, 0);
    }
    return r;
}

COGENT_HOOK int pipe2(int fds[2], int flags) {
    int r = libc().pipe2(fds, flags);
    if (r == 0) {
        note_new_fd(fds[0], FdKind::pollable, (flags & O_NONBLOCK) ? 1 : 0);
        note_new_fd(fds[1], FdKind::pollable, (flags & O_NONBLOCK) ? 1 : 0);
    }
    return r;
}

COGENT_HOOK int connect(int fd, const sockaddr* addr, socklen_t len) {
    const Real& r = libc();
    if (!cooperative(Family::socket) || kind_of(fd) != FdKind::socket || user_nonblock(fd))
        return r.connect(fd, addr, len);
    ErrnoKeeper ek;
    std::optional<detail::Deadline> dl;
    for (;;) {
        // connect(2) has no per-call flag: O_NONBLOCK for the call itself, restored at once.
        int fl = r.fcntl(fd, F_GETFL);
        if (fl < 0) return -1;
        if (r.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
        int rc = r.connect(fd, addr, len);
        int err = errno;
        r.fcntl(fd, F_SETFL, fl);
        if (rc == 0) return ek.ok(0);
        if (!dl) dl.emplace(sock_timeout(fd, true));
        if (err == EINPROGRESS) {
            int p = park(fd, WRITE, dl->left(), false, "connect()");
            if (p < 0) return -1;
            if (p == 0) {
                errno = EINPROGRESS;  // what a blocking connect says when SO_SNDTIMEO expires
                return -1;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (r.getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -1;
            if (soerr) {
                errno = soerr;
                return -1;
            }
            return ek.ok(0);
        }
        if (would_block(err)) {  // a Unix socket whose listener's backlog is full: wait, retry
            int p = park(fd, WRITE, dl->left(), false, "connect()");
            if (p < 0) return -1;
            if (p == 0) {
                errno = EAGAIN;
                return -1;
            }
            continue;
        }
        errno = err;
        return -1;
    }
}

static int co_accept4(int fd, sockaddr* addr, socklen_t* len, int flags, bool plain) {
    const Real& r = libc();
    auto call = [&] { return plain ? r.accept(fd, addr, len) : r.accept4(fd, addr, len, flags); };
    if (!cooperative(Family::socket) || kind_of(fd) != FdKind::socket || user_nonblock(fd)) {
        int c = call();
        if (c >= 0) note_new_fd(c, FdKind::socket, (!plain && (flags & SOCK_NONBLOCK)) ? 1 : 0);
        return c;
    }
    ErrnoKeeper ek;
    std::optional<detail::Deadline> dl;
    for (;;) {
        // accept(2) has no per-call flag either: wait until poll says a connection is there.
        pollfd p{fd, POLLIN, 0};
        int saved = errno;
        int n = r.poll(&p, 1, 0);
        errno = saved;
        if (n != 0) {
            int c = call();
            if (c >= 0) {
                note_new_fd(c, FdKind::socket, (!plain && (flags & SOCK_NONBLOCK)) ? 1 : 0);
                return ek.ok(c);
            }
            return -1;
        }
        if (!dl) dl.emplace(sock_timeout(fd, false));
        int k = park(fd, READ, dl->left(), false, "accept()");
        if (k < 0) return -1;
        if (k == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
}

COGENT_HOOK int accept(int fd, sockaddr* addr, socklen_t* len) {
    return co_accept4(fd, addr, len, 0, true);
}

COGENT_HOOK int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
    return co_accept4(fd, addr, len, flags, false);
}

COGENT_HOOK ssize_t recv(int fd, void* buf, size_t n, int flags) {
    if (!cooperative(Family::socket)) return libc().recv(fd, buf, n, flags);
    return co_recvfrom(fd, buf, n, flags, nullptr, nullptr, "recv()");
}

COGENT_HOOK ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from,
                             socklen_t* fromlen) {
    if (!cooperative(Family::socket)) return libc().recvfrom(fd, buf, n, flags, from, fromlen);
    return co_recvfrom(fd, buf, n, flags, from, fromlen, "recvfrom()");
}

COGENT_HOOK ssize_t recvmsg(int fd, msghdr* msg, int flags) {
    if (!cooperative(Family::socket)) return libc().recvmsg(fd, msg, flags);
    return co_recvmsg(fd, msg, flags);
}

COGENT_HOOK int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout) {
    const Real& r = libc();
    if (!cooperative(Family::socket) || (flags & MSG_DONTWAIT) || vlen == 0)
        return r.recvmmsg(fd, vec, vlen, flags, timeout);
    ErrnoKeeper ek;
    std::optional<detail::Deadline> dl;  // SO_RCVTIMEO, then the call's own timeout
    std::optional<detail::Deadline> call_dl;
    if (timeout) {
        if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1'000'000'000) {
            errno = EINVAL;
            return -1;
        }
        call_dl.emplace(detail::from_sec_ns(timeout->tv_sec, timeout->tv_nsec));  // saturated
    }
    unsigned got = 0;
    for (;;) {
        int k = r.recvmmsg(fd, vec + got, vlen - got, (flags & ~MSG_WAITFORONE) | MSG_DONTWAIT,
                           nullptr);
        if (k > 0) {
            got += unsigned(k);
            if (got == vlen || (flags & MSG_WAITFORONE)) return ek.ok(int(got));
            if (call_dl && call_dl->left().zero()) return ek.ok(int(got));
            continue;
        }
        if (k < 0 && !would_block(errno)) return got ? ek.ok(int(got)) : -1;
        if (user_nonblock(fd)) {
            if (got) return ek.ok(int(got));
            errno = EAGAIN;
            return -1;
        }
        if (!dl) dl.emplace(sock_timeout(fd, false));
        TimeoutArg left = dl->left();
        if (got && call_dl) {
            TimeoutArg c = call_dl->left();
            if (left.forever() || c.value() < left.value()) left = c;
        }
        int p = park(fd, READ, left, true, "recvmmsg()");
        if (p < 0) return got ? ek.ok(int(got)) : -1;
        if (p == 0) {
            if (got) return ek.ok(int(got));
            errno = EAGAIN;
            return -1;
        }
    }
}

COGENT_HOOK ssize_t send(int fd, const void* buf, size_t n, int flags) {
    if (!cooperative(Family::socket)) return libc().send(fd, buf, n, flags);
    return co_sendto(fd, buf, n, flags, nullptr, 0, "send()");
}

COGENT_HOOK ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to,
                           socklen_t tolen) {
    if (!cooperative(Family::socket)) return libc().sendto(fd, buf, n, flags, to, tolen);
    return co_sendto(fd, buf, n, flags, to, tolen, "sendto()");
}

COGENT_HOOK ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
    if (!cooperative(Family::socket)) return libc().sendmsg(fd, msg, flags);
    return co_sendmsg(fd, msg, flags);
}

COGENT_HOOK int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags) {
    const Real& r = libc();
    if (!cooperative(Family::socket) || (flags & MSG_DONTWAIT) || vlen == 0)
        return r.sendmmsg(fd, vec, vlen, flags);
    ErrnoKeeper ek;
    std::optional<detail::Deadline> dl;
    unsigned done = 0;
    for (;;) {
        int k = r.sendmmsg(fd, vec + done, vlen - done, flags | MSG_DONTWAIT);
        if (k > 0) {
            done += unsigned(k);
            if (done == vlen) return ek.ok(int(done));
            continue;
        }
        if (!would_block(errno) || user_nonblock(fd)) return done ? ek.ok(int(done)) : -1;
        if (!dl) dl.emplace(sock_timeout(fd, true));
        int p = park(fd, WRITE, dl->left(), false, "sendmmsg()");
        if (p <= 0) {
            if (done) return ek.ok(int(done));
            if (p == 0) errno = EAGAIN;
            return -1;
        }
    }
}

COGENT_HOOK ssize_t read(int fd, void* buf, size_t n) {
    const Real& r = libc();
    if (!cooperative(Family::socket)) return r.read(fd, buf, n);
    switch (kind_of(fd)) {
        case FdKind::socket: {
            ssize_t k = co_recvfrom(fd, buf, n, 0, nullptr, nullptr, "read()");
            if (k < 0 && errno == ENOTSOCK && stale(fd)) return read(fd, buf, n);
            return k;
        }
        case FdKind::pollable:
            if (user_nonblock(fd) || n == 0) return r.read(fd, buf, n);
            if (wait_pollable(fd, READ, "read()") < 0) return -1;
            return r.read(fd, buf, n);
        default:
            return r.read(fd, buf, n);
    }
}

COGENT_HOOK ssize_t write(int fd, const void* buf, size_t n) {
    const Real& r = libc();
    if (!cooperative(Family::socket)) return r.write(fd, buf, n);
    switch (kind_of(fd)) {
        case FdKind::socket: {
            ssize_t k = co_sendto(fd, buf, n, 0, nullptr, 0, "write()");
            if (k < 0 && errno == ENOTSOCK && stale(fd)) return write(fd, buf, n);
            return k;
        }
        case FdKind::pollable: {
            if (user_nonblock(fd) || n == 0) return r.write(fd, buf, n);
            // Up to PIPE_BUF bytes fit once poll says writable; more are written in pieces,
            // waiting between them, so a full pipe parks the greenlet, not the thread.
            ErrnoKeeper ek;
            size_t done = 0;
            while (done < n) {
                if (wait_pollable(fd, WRITE, "write()") < 0)
                    return done ? ek.ok(ssize_t(done)) : -1;
                size_t chunk = n - done;
                if (chunk > PIPE_BUF && n > PIPE_BUF) chunk = PIPE_BUF;
                ssize_t k = r.write(fd, static_cast<const char*>(buf) + done, chunk);
                if (k < 0) return done ? ek.ok(ssize_t(done)) : -1;
                done += size_t(k);
            }
            return ek.ok(ssize_t(done));
        }
        default:
            return r.write(fd, buf, n);
    }
}

COGENT_HOOK ssize_t readv(int fd, const iovec* iov, int cnt) {
    const Real& r = libc();
    if (!cooperative(Family::socket)) return r.readv(fd, iov, cnt);
    switch (kind_of(fd)) {
        case FdKind::socket: {
            if (cnt < 0 || cnt > IOV_MAX) return r.readv(fd, iov, cnt);  // EINVAL from libc
            msghdr m{};
            m.msg_iov = const_cast<iovec*>(iov);
            m.msg_iovlen = size_t(cnt);
            ssize_t k = co_recvmsg(fd, &m, 0);
            if (k < 0 && errno == ENOTSOCK && stale(fd)) return readv(fd, iov, cnt);
            return k;
        }
        case FdKind::pollable:
            if (user_nonblock(fd)) return r.readv(fd, iov, cnt);
            if (wait_pollable(fd, READ, "readv()") < 0) return -1;
            return r.readv(fd, iov, cnt);
        default:
            return r.readv(fd, iov, cnt);
    }
}

COGENT_HOOK ssize_t writev(int fd, const iovec* iov, int cnt) {
    const Real& r = libc();
    if (!cooperative(Family::socket)) return r.writev(fd, iov, cnt);
    switch (kind_of(fd)) {
        case FdKind::socket: {
            if (cnt < 0 || cnt > IOV_MAX) return r.writev(fd, iov, cnt);
            msghdr m{};
            m.msg_iov = const_cast<iovec*>(iov);
            m.msg_iovlen = size_t(cnt);
            ssize_t k = co_sendmsg(fd, &m, 0);
            if (k < 0 && errno == ENOTSOCK && stale(fd)) return writev(fd, iov, cnt);
            return k;
        }
        case FdKind::pollable:
            if (user_nonblock(fd)) return r.writev(fd, iov, cnt);
            if (wait_pollable(fd, WRITE, "writev()") < 0) return -1;
            return r.writev(fd, iov, cnt);
        default:
            return r.writev(fd, iov, cnt);
    }
}

COGENT_HOOK int close(int fd) {
    closing(fd);
    return libc().close(fd);
}

// fclose closes its fd inside glibc, where the close hook cannot see it: a socket wrapped with
// fdopen would leave its waiters and table entry behind. Not in the list; cheap.
COGENT_HOOK int fclose(FILE* f) {
    if (f) {
        int fd = fileno(f);
        if (fd >= 0) closing(fd);
    }
    return libc().fclose(f);
}

COGENT_HOOK int dup(int fd) {
    int r = libc().dup(fd);
    if (r >= 0) fd_forget(r);
    return r;
}

COGENT_HOOK int dup2(int oldfd, int newfd) {
    if (oldfd != newfd) {
        // newfd is closed by dup2 if open: wake its waiters first (only if oldfd is valid, or
        // dup2 fails with EBADF and newfd stays as it was).
        int saved = errno;
        if (libc().fcntl(oldfd, F_GETFD) >= 0) closing(newfd);
        errno = saved;
    }
    return libc().dup2(oldfd, newfd);
}

COGENT_HOOK int dup3(int oldfd, int newfd, int flags) {
    if (oldfd != newfd) {
        int saved = errno;
        if (libc().fcntl(oldfd, F_GETFD) >= 0 && (flags & ~O_CLOEXEC) == 0) closing(newfd);
        errno = saved;
    }
    return libc().dup3(oldfd, newfd, flags);
}

static int fcntl_impl(int fd, int cmd, void* arg) {
    int r = libc().fcntl(fd, cmd, arg);
    if (r < 0) return r;
    switch (cmd) {
        case F_SETFL:
            if (FdInfo* f = fd_info(fd))
                f->nonblock.store((reinterpret_cast<std::intptr_t>(arg) & O_NONBLOCK) ? 1 : 0,
                                  std::memory_order_relaxed);
            break;
        case F_DUPFD:
        case F_DUPFD_CLOEXEC:
            fd_forget(r);
            break;
        default:
            break;
    }
    return r;
}

// With _FILE_OFFSET_BITS=64 (meson's default, and many programs') <fcntl.h> renames fcntl to
// fcntl64, so both symbols are defined under explicit names.
COGENT_HOOK int cogent_hook_fcntl(int fd, int cmd, ...) __asm__("fcntl");
COGENT_HOOK int cogent_hook_fcntl64(int fd, int cmd, ...) __asm__("fcntl64");

COGENT_HOOK int cogent_hook_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void* arg = va_arg(ap, void*);  // as glibc's own wrapper reads it, whatever the command
    va_end(ap);
    return fcntl_impl(fd, cmd, arg);
}

COGENT_HOOK int cogent_hook_fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    return fcntl_impl(fd, cmd, arg);
}

COGENT_HOOK int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    int r = libc().ioctl(fd, request, arg);
    if (r == 0 && request == FIONBIO && arg)
        if (FdInfo* f = fd_info(fd))
            f->nonblock.store(*static_cast<int*>(arg) ? 1 : 0, std::memory_order_relaxed);
    return r;
}

COGENT_HOOK int setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
    int r = libc().setsockopt(fd, level, name, val, len);
    if (r == 0 && level == SOL_SOCKET && val && len >= socklen_t(sizeof(timeval))) {
        const bool rcv = name == SO_RCVTIMEO_OLD || name == SO_RCVTIMEO_NEW;
        const bool snd = name == SO_SNDTIMEO_OLD || name == SO_SNDTIMEO_NEW;
        if (rcv || snd) {
            // On 64-bit Linux both the old and the new layout are {64-bit sec, 64-bit usec}.
            const auto* tv = static_cast<const timeval*>(val);
            // Saturated: beyond ~292 years is Duration::max() (the kernel: forever).
            std::int64_t ns =
                detail::from_sec_ns(tv->tv_sec, std::int64_t(tv->tv_usec) * 1000).count();
            if (FdInfo* f = fd_info(fd))
                (rcv ? f->rcvtimeo_ns : f->sndtimeo_ns).store(ns < 0 ? 0 : ns);
        }
    }
    return r;
}

COGENT_HOOK int getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
    return libc().getsockopt(fd, level, name, val, len);
}

COGENT_HOOK pid_t fork() {
    // The hub's own reinitialisation runs from libcogent's pthread_atfork handler; the fd table
    // is inherited with the fds.
    return libc().fork();
}

// ---- fortified variants (-D_FORTIFY_SOURCE=2 builds call these)
// ----------------------------------

[[noreturn]] void __chk_fail();

COGENT_HOOK ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
    if (n > buflen) __chk_fail();
    return read(fd, buf, n);
}

COGENT_HOOK ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
    if (n > buflen) __chk_fail();
    return recv(fd, buf, n, flags);
}

COGENT_HOOK ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags,
                                   sockaddr* from, socklen_t* fromlen) {
    if (n > buflen) __chk_fail();
    return recvfrom(fd, buf, n, flags, from, fromlen);
}

}  // extern "C"
