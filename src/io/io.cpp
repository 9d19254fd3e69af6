// Waiting on file descriptors (io.hpp): one fd watcher (loop::Io) per fd and direction, a table
// of them per hub, and the close protocol that wakes waiters before an fd number can be reused.
// A waiter parks through the one Parker (wait/park.hpp), which owns its timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

#include "cogent/exceptions.hpp"
#include "io/fdwait.hpp"
#include "wait/park.hpp"

namespace cogent::detail {

// A greenlet parked in fd_wait. Lives on its stack; every path out unregisters it and stops
// what it started (the destructor; the Parker disarms its timer and unlinks a queued wake),
// so no watcher or timer points at a dead frame.
struct FdWaiter {
    Parker p;
    FdState* state = nullptr;  // null once detached
    int events = 0;
    int revents = 0;
    bool closed = false;      // notify_closing woke it
    bool closed_raw = false;  // the fd was found closed behind cogent's back (check_armed)
    bool bad_fd = false;      // the loop could not watch the fd (loop::kError)
    FdWaiter(HubImpl* hub, GreenletImpl* g) noexcept : p(hub, g) {}
    FdWaiter(const FdWaiter&) = delete;
    FdWaiter& operator=(const FdWaiter&) = delete;
    ~FdWaiter();
};

const GreenletImpl* waiter_greenlet(const FdWaiter* w) noexcept { return w->p.greenlet(); }

namespace {

constexpr int dir_bit(int d) { return d == 0 ? READ : WRITE; }

void start_dir(HubImpl* hub, FdState* s, int d) {
    loop::Io& io = s->io[d];
    if (io.active())
        io.ref();  // a kept read watcher has a waiter again: it keeps the loop alive
    else
        io.start(hub->loop());
}

// Also for a watcher the loop stopped itself (an fd error): that drops its pending event.
void stop_dir(FdState* s, int d) noexcept {
    if (d == 0) s->may_read = true;  // the hint is only meaningful while the watcher is armed
    s->io[d].stop();
}

// Unregister w from its fd. The read watcher stays armed (unreferenced, so it cannot keep the
// loop alive by itself) when the fd's owner asked for keep_read. A watcher the loop stopped
// (an fd error) is left alone: its pending error event fails the fd's other waiter, if any.
void detach(FdWaiter* w, bool keep_ok) noexcept {
    FdState* s = w->state;
    if (!s) return;
    for (int d = 0; d < 2; ++d) {
        if (!(w->events & dir_bit(d)) || s->waiter[d] != w) continue;
        s->waiter[d] = nullptr;
        if (!s->io[d].active()) continue;
        if (d == 0 && keep_ok && s->keep)
            s->io[0].unref();
        else
            stop_dir(s, d);
    }
    w->state = nullptr;
}

void on_io(loop::Io& io, int revents) {
    auto* s = static_cast<FdState*>(io.data());
    const int d = &io == &s->io[0] ? 0 : 1;
    if (revents & loop::kError) [[unlikely]] {
        // The loop could not watch the fd (EBADF, or a file type epoll refuses and libev could
        // not fall back for); it has stopped every watcher on it. Fail the waiters.
        for (int k = 0; k < 2; ++k) {
            if (s->io[k].active()) stop_dir(s, k);
            if (FdWaiter* w = s->waiter[k]) {
                w->bad_fd = true;
                detach(w, false);
                // The other direction's waiter (if any) is failed by its watcher's error event.
                return w->p.wake();
            }
        }
        return;
    }
    if (d == 0) s->may_read = true;
    FdWaiter* w = s->waiter[d];
    if (!w) {
        // A kept watcher fired with nobody waiting: stop it, or a level-triggered fd with
        // unread data would wake the loop on every iteration.
        stop_dir(s, d);
        return;
    }
    w->revents |= dir_bit(d);
    detach(w, true);
    w->p.wake();
}

std::string describe_fd(int fd) {
    std::string out = "fd " + std::to_string(fd);
    auto name = [](const sockaddr_storage& ss, socklen_t len) -> std::string {
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET) {
            auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
        }
        if (ss.ss_family == AF_INET6) {
            auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
        }
        if (ss.ss_family == AF_UNIX) {
            auto* a = reinterpret_cast<const sockaddr_un*>(&ss);
            if (len > offsetof(sockaddr_un, sun_path) && a->sun_path[0])
                return std::string(a->sun_path);
            return "unix";
        }
        return "?";
    };
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        out = "socket " + out + " (" + name(ss, len);
        sockaddr_storage ps{};
        socklen_t plen = sizeof ps;
        if (getpeername(fd, reinterpret_cast<sockaddr*>(&ps), &plen) == 0)
            out += " -> " + name(ps, plen);
        out += ")";
    }
    return out;
}

[[noreturn, gnu::cold]] void concurrent_use(int fd, int d, FdWaiter* other) {
    char gname[128] = "?";
    if (other && other->p.greenlet()) other->p.greenlet()->describe(gname, sizeof gname);
    throw ConcurrentObjectUseError("cogent: " + describe_fd(fd) + " is already waited on for " +
                                   (d == 0 ? "reading" : "writing") + " by another greenlet (" +
                                   gname + "); one greenlet per direction");
}

[[noreturn, gnu::cold]] void throw_bad_fd(int fd, const char* what) {
    throw std::system_error(EBADF, std::generic_category(),
                            "cogent: " + std::string(what) + " on fd " + std::to_string(fd) +
                                ", which is not an open file descriptor");
}

void check_args(int fd, int events) {
    if (fd < 0)
        throw std::invalid_argument("cogent: cannot wait on a negative file descriptor (" +
                                    std::to_string(fd) + ")");
    if (events == 0 || (events & ~(READ | WRITE)))
        throw std::invalid_argument("cogent: wait_fd events must be READ, WRITE or both (got " +
                                    std::to_string(events) + ")");
}

}  // namespace

FdWaiter::~FdWaiter() { detach(this, true); }

namespace {

// Wake fd's waiters on this hub (queued wakes: never a switch from here) with EBADF, stop its
// watchers and forget its state. raw: the fd is already closed, by a close notify_closing did
// not see; otherwise it is about to be closed.
void drop_fd(IoTable* table, int fd, bool raw) noexcept {
    fdset_fd_closing(fd, raw);  // select/poll waiting on fd (select.cpp)
    if (!table) return;
    FdState* s = table->find(fd);
    if (!s) return;
    for (int d = 0; d < 2; ++d) {
        FdWaiter* w = s->waiter[d];
        if (!w) continue;
        (raw ? w->closed_raw : w->closed) = true;
        detach(w, false);
        w->p.wake_later();
    }
    for (int d = 0; d < 2; ++d) stop_dir(s, d);
    table->slots[std::size_t(fd)] = nullptr;
    delete s;
}

// The prepare watcher: libev calls it right before fd_reify, and nothing of ours runs between
// the two (wakes are queued), so an fd that passes here reaches epoll_ctl still open.
void check_armed(loop::Prepare& w) {
    auto* table = static_cast<IoTable*>(w.data());
    w.stop();
    std::vector<pollfd>& fds = table->armed;
    // Events 0: only POLLNVAL (and hang-ups and errors, which do not matter here) can come back.
    // Straight to the kernel: the patch shim interposes poll and ppoll.
    timespec zero{0, 0};
    long n;
    do {
        n = ::syscall(SYS_ppoll, fds.data(), nfds_t(fds.size()), &zero, nullptr, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        for (const pollfd& p : fds)
            if (p.revents & POLLNVAL) drop_fd(table, p.fd, true);
    // n < 0 (ENOMEM: the kernel had no memory for the check): libev will try its epoll_ctl
    // anyway, as it did before this check existed.
    fds.clear();
}

}  // namespace

IoTable::IoTable(HubImpl* h) : hub(h) { guard.set_callback(&check_armed, this); }

IoTable::~IoTable() {
    guard.stop();
    for (FdState*& s : slots) {
        if (!s) continue;
        for (int d = 0; d < 2; ++d) stop_dir(s, d);
        delete s;
        s = nullptr;
    }
}

void IoTable::note_armed(int fd) {
    armed.push_back(pollfd{fd, 0, 0});
    // Not unreferenced: it only ever runs in an iteration that has fd watchers to reify, and
    // stops itself there.
    guard.start(hub->loop());  // no-op if active
}

void fd_after_fork(HubImpl* hub) noexcept {
    IoTable* table = hub->io;
    if (!table) return;  // select/poll create it too: no table, no fd watcher
    try {
        for (FdState* s : table->slots)
            if (s && (s->io[0].active() || s->io[1].active())) table->note_armed(s->fd);
        fdset_note_all(*table);
    } catch (...) {
        // No memory for the list: libev checks nothing either, as before.
    }
}

namespace {
// The hub's fd table goes with the hub (stopping the fd watchers still armed: kept read watchers
// of open sockets); in a forked child, its fds are checked before libev re-adds them.
[[maybe_unused]] const HubHooksRegistration g_io_hub_hooks{{
    .destroy =
        [](HubImpl* hub) noexcept {
            delete hub->io;
            hub->io = nullptr;
        },
    .after_fork = &fd_after_fork,
}};
}  // namespace

FdState* IoTable::get(int fd) {
    if (std::size_t(fd) >= slots.size()) slots.resize(std::size_t(fd) + 64, nullptr);
    FdState*& s = slots[std::size_t(fd)];
    if (!s) {
        s = new FdState;
        s->fd = fd;
        for (int d = 0; d < 2; ++d) {
            s->io[d].set_callback(&on_io, s);
            s->io[d].set(fd, d == 0 ? loop::kRead : loop::kWrite);
        }
    }
    return s;
}

int fd_wait(int fd, int events, TimeoutArg timeout, bool keep_read, const char* what,
            bool known_open) {
    check_args(fd, events);
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    HubImpl* hub = hub_of(ts);
    if (cur == hub->greenlet) blocking_on_hub(what);
    if (timeout.zero()) {
        // "Do not block": ask the kernel once.
        pollfd p{fd, short((events & READ ? POLLIN : 0) | (events & WRITE ? POLLOUT : 0)), 0};
        int saved = errno;
        int n = ::poll(&p, 1, 0);
        errno = saved;
        if (n > 0 && (p.revents & POLLNVAL)) throw_bad_fd(fd, what);
        if (n <= 0) return 0;
        int r = 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) r |= READ;
        if (p.revents & (POLLOUT | POLLHUP | POLLERR)) r |= WRITE;
        return r & events;
    }
    IoTable* table = &io_table(hub);
    FdState* s = table->get(fd);
    for (int d = 0; d < 2; ++d)
        if ((events & dir_bit(d)) && s->waiter[d]) concurrent_use(fd, d, s->waiter[d]);

    // A watcher about to start must be checked before libev hands fd to epoll_ctl (IoTable);
    // that check also answers a wait on an fd that is not open at all (EBADF, after one trip
    // through the hub). A watcher already armed proves nothing (the fd may have been closed
    // behind our back since) unless the caller has just seen the fd work.
    if (!known_open || ((events & READ) && !s->io[0].active()) ||
        ((events & WRITE) && !s->io[1].active()))
        table->note_armed(fd);
    FdWaiter w(hub, cur);
    w.state = s;
    w.events = events;
    if (events & READ) s->keep = keep_read;
    for (int d = 0; d < 2; ++d) {
        if (!(events & dir_bit(d))) continue;
        s->waiter[d] = &w;
        start_dir(hub, s, d);
    }
    if (!timeout.forever())
        w.p.on_timeout([](void* self) { detach(static_cast<FdWaiter*>(self), true); }, &w);
    if (!w.p.park(timeout, what)) return 0;  // kill / Timeout: ~FdWaiter cleans up
    if (w.closed)
        throw std::system_error(EBADF, std::generic_category(),
                                "cogent: fd " + std::to_string(fd) +
                                    ": file descriptor was closed in another greenlet");
    if (w.closed_raw)
        throw std::system_error(EBADF, std::generic_category(),
                                "cogent: " + std::string(what) + " on fd " + std::to_string(fd) +
                                    ", which is not an open file descriptor (or was closed "
                                    "while waiting, by a close that bypassed cogent::close)");
    if (w.bad_fd) throw_bad_fd(fd, what);
    return w.revents & events;
}

void fd_drained(int fd) noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || !ts->hub->io) return;
    FdState* s = ts->hub->io->find(fd);
    // Only an armed watcher makes "not readable" safe to act on: it will fire on new data.
    if (s && s->io[0].active()) s->may_read = false;
}

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

bool wait_read(int fd, TimeoutArg timeout) {
    return fd_wait(fd, READ, timeout, false, "wait_read()") != 0;
}

bool wait_write(int fd, TimeoutArg timeout) {
    return fd_wait(fd, WRITE, timeout, false, "wait_write()") != 0;
}

int wait_fd(int fd, int events, TimeoutArg timeout) {
    return fd_wait(fd, events, timeout, false, "wait_fd()");
}

void notify_closing(int fd) noexcept {
    if (fd < 0) return;
    ThreadState* ts = tls_state;
    drop_fd(ts && ts->hub ? ts->hub->io : nullptr, fd, false);
}

int close(int fd) noexcept {
    notify_closing(fd);
    return ::close(fd);
}

}  // namespace cogent
