// Cooperative select/poll (select.hpp). The kernel is always the judge of readiness: each call
// first asks it with a zero-timeout ppoll, and when nothing is ready parks the greenlet until
// something *may* be ready, then asks again. So every revents bit poll(2) would report (POLLHUP,
// POLLRDHUP, POLLNVAL, ...) is reported exactly, and a wake-up that turns out to be stale just
// parks again.
//
// Parking on many fds at once ("multi-wait") uses its own fd watchers (loop::Io), not fd_wait's
// per-fd table: that table allows one waiter per fd and direction (a socket's reader), and
// select must be able to watch an fd a Socket is also waiting on. The greenlet parks through
// the one Parker (wait/park.hpp), which owns the timeout. Two ways to park:
//   direct - one fd watcher per fd. Used when every fd asks only for POLLIN/POLLOUT (and their
//            RDNORM/WRNORM twins), which is what libev can express; a firing watcher then always
//            means poll(2) has something to report, so there is no busy loop. Cheapest for the
//            common case, and libev keeps the fds in its epoll set between calls.
//   epoll  - a private epoll set holding each fd with its exact event mask (POLLPRI for xlist,
//            POLLRDHUP, an empty mask that waits only for errors/hang-ups), watched through one
//            fd watcher on the epoll fd. libev has no way to watch POLLPRI, and watching EV_READ
//            instead would spin on an fd that has normal data but no urgent data.
// Every watched fd is also linked into a per-thread registry, so that notify_closing (hence
// cogent::close and Socket::close) wakes a select/poll waiting on an fd being closed, with
// EBADF for select and POLLNVAL for poll, and no watcher stays on the closed fd. Every watched
// fd is also noted with the hub's IoTable (fdwait.hpp), which checks it is still open just
// before libev hands it to epoll_ctl: one closed behind cogent's back by then (libev would
// abort the process) wakes its waiters the same way.
#include "cogent/select.hpp"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <unordered_map>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"
#include "io/fdwait.hpp"
#include "wait/park.hpp"

namespace cogent::detail {

namespace {

struct FdSetWait;

// One fd watched by an FdSetWait.
struct FdSetEntry {
    loop::Io io;  // direct mode only
    FdSetWait* owner = nullptr;
    FdSetEntry* reg_prev = nullptr;  // chain of entries on the same fd (this thread)
    FdSetEntry* reg_next = nullptr;
    int fd = -1;
    bool registered = false;
};

// fd -> entries waiting on it, for this thread. Plain memory (no thread_local destructor): a
// greenlet parked in select is unwound by the thread's teardown, which runs from a
// thread_local destructor and may come after ours would. The array is freed by a pthread key
// destructor, which runs after every thread_local destructor.
struct Registry {
    FdSetEntry** heads;
    std::size_t cap;
    std::size_t count;  // registered entries: the debug counter of active multi-wait watches
};
thread_local constinit Registry t_reg{nullptr, 0, 0};

pthread_key_t g_reg_key;
pthread_once_t g_reg_once = PTHREAD_ONCE_INIT;

void free_registry(void*) {
    std::free(t_reg.heads);
    t_reg.heads = nullptr;
    t_reg.cap = 0;
}

void reg_reserve(int fd) {
    Registry& r = t_reg;
    if (std::size_t(fd) < r.cap) return;
    if (!r.heads) {
        pthread_once(&g_reg_once, [] { pthread_key_create(&g_reg_key, &free_registry); });
        pthread_setspecific(g_reg_key, &t_reg);  // any non-null value: run the destructor
    }
    std::size_t cap = std::max<std::size_t>(std::size_t(fd) + 64, r.cap * 2);
    auto* p = static_cast<FdSetEntry**>(std::realloc(r.heads, cap * sizeof(FdSetEntry*)));
    if (!p) throw std::bad_alloc();
    std::fill(p + r.cap, p + cap, nullptr);
    r.heads = p;
    r.cap = cap;
}

void reg_add(FdSetEntry* e) {
    reg_reserve(e->fd);
    Registry& r = t_reg;
    FdSetEntry*& head = r.heads[e->fd];
    e->reg_prev = nullptr;
    e->reg_next = head;
    if (head) head->reg_prev = e;
    head = e;
    e->registered = true;
    ++r.count;
}

void reg_remove(FdSetEntry* e) noexcept {
    if (!e->registered) return;
    Registry& r = t_reg;
    if (e->reg_prev)
        e->reg_prev->reg_next = e->reg_next;
    else
        r.heads[e->fd] = e->reg_next;
    if (e->reg_next) e->reg_next->reg_prev = e->reg_prev;
    e->reg_prev = e->reg_next = nullptr;
    e->registered = false;
    --r.count;
}

// A greenlet parked on several fds. Lives on its stack; the destructor undoes everything on
// every exit path (wake, timeout, kill, Timeout, an exception while arming); the Parker
// disarms the timer and unlinks a queued wake.
struct FdSetWait {
    Parker p;
    FdSetEntry* entries = nullptr;
    std::size_t n = 0;
    bool direct = false;
    int epfd = -1;
    loop::Io epio;            // epoll mode: the private epoll fd
    int closed_fd = -1;       // notify_closing woke us for this fd
    bool closed_raw = false;  // ... found already closed (see IoTable): not a cogent::close
    int error_fd = -1;        // the loop could not watch this fd (loop::kError)
    FdSetEntry small[8];
    std::unique_ptr<FdSetEntry[]> big;

    FdSetWait(HubImpl* hub, GreenletImpl* g) noexcept : p(hub, g) {}
    FdSetWait(const FdSetWait&) = delete;
    FdSetWait& operator=(const FdSetWait&) = delete;
    ~FdSetWait() {
        detach();
        if (epfd >= 0) ::close(epfd);
    }
    // Stop every watcher and leave the registry. Idempotent.
    void detach() noexcept {
        for (std::size_t i = 0; i < n; ++i) {
            reg_remove(&entries[i]);
            entries[i].io.stop();  // also drops a pending event
        }
        epio.stop();
    }
};

void on_entry_io(loop::Io& io, int revents) {
    auto* e = static_cast<FdSetEntry*>(io.data());
    FdSetWait* mw = e->owner;
    if (revents & loop::kError) mw->error_fd = e->fd;
    mw->detach();
    mw->p.wake();
}

// error_fd value: the loop could not watch our private epoll fd (it cannot happen short of the
// kernel refusing an epoll fd in an epoll set).
constexpr int kEpollFailed = -2;

void on_epoll_io(loop::Io& io, int revents) {
    auto* mw = static_cast<FdSetWait*>(io.data());
    if (revents & loop::kError) mw->error_fd = kEpollFailed;
    mw->detach();
    mw->p.wake();
}

constexpr short kDirectEvents = POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM;
constexpr std::uint32_t kEpollEvents = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDNORM | EPOLLRDBAND |
                                       EPOLLWRNORM | EPOLLWRBAND | EPOLLRDHUP;
static_assert(POLLIN == EPOLLIN && POLLPRI == EPOLLPRI && POLLOUT == EPOLLOUT &&
                  POLLRDHUP == EPOLLRDHUP && POLLRDNORM == EPOLLRDNORM && POLLWRBAND == EPOLLWRBAND,
              "poll and epoll event bits are the same numbers on Linux");

// ppoll with a zero timeout, straight to the kernel: the patch shim interposes poll/ppoll and
// routes them here, so this must not go through those symbols again. Keeps errno on success.
int poll_now(pollfd* fds, nfds_t n) {
    timespec zero{0, 0};
    int saved = errno;
    for (;;) {
        long r = ::syscall(SYS_ppoll, fds, n, &zero, nullptr, 0);
        if (r >= 0) {
            errno = saved;
            return int(r);
        }
        if (errno != EINTR) return -1;
    }
}

struct ParkResult {
    bool timed_out = false;
    int closed_fd = -1;
    bool closed_raw = false;
    int error_fd = -1;
};

// Park the current greenlet until one of fds may be ready, the timeout passes, or one of them
// is closed through notify_closing. Entries with fd < 0 are ignored. The caller re-polls.
ParkResult park_fds(const pollfd* fds, nfds_t nfds, TimeoutArg timeout, const char* what) {
    ParkResult out;
    if (timeout.zero()) {
        out.timed_out = true;
        return out;
    }
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    HubImpl* hub = hub_of(ts);
    if (cur == hub->greenlet) blocking_on_hub(what);

    std::size_t watched = 0;
    bool direct = true;
    for (nfds_t i = 0; i < nfds; ++i) {
        if (fds[i].fd < 0) continue;
        ++watched;
        if (fds[i].events == 0 || (fds[i].events & ~kDirectEvents)) direct = false;
    }

    FdSetWait mw(hub, cur);
    mw.direct = direct;
    if (watched <= std::size(mw.small)) {
        mw.entries = mw.small;
    } else {
        mw.big.reset(new FdSetEntry[watched]);
        mw.entries = mw.big.get();
    }

    if (!direct && watched > 0) {
        // Merge duplicate fds (epoll_ctl refuses a second ADD) into one mask per fd.
        std::vector<std::pair<int, std::uint32_t>> masks;
        masks.reserve(watched);
        for (nfds_t i = 0; i < nfds; ++i)
            if (fds[i].fd >= 0)
                masks.emplace_back(fds[i].fd, std::uint32_t(fds[i].events) & kEpollEvents);
        std::sort(masks.begin(), masks.end());
        mw.epfd = ::epoll_create1(EPOLL_CLOEXEC);
        if (mw.epfd < 0)
            throw std::system_error(errno, std::generic_category(),
                                    std::string("cogent: ") + what + ": epoll_create1");
        for (std::size_t i = 0; i < masks.size();) {
            epoll_event ev{};
            ev.data.fd = masks[i].first;
            std::size_t j = i;
            for (; j < masks.size() && masks[j].first == masks[i].first; ++j)
                ev.events |= masks[j].second;
            if (::epoll_ctl(mw.epfd, EPOLL_CTL_ADD, masks[i].first, &ev) < 0 && errno != EPERM) {
                // EPERM: a regular file or directory, which epoll cannot watch and poll(2)
                // reports ready for POLLIN/POLLOUT at once (we only get here for other bits,
                // which such files never report: waiting forever on it is what poll(2) does).
                throw std::system_error(errno, std::generic_category(),
                                        std::string("cogent: ") + what + ": cannot watch fd " +
                                            std::to_string(masks[i].first));
            }
            i = j;
        }
        mw.epio.set_callback(&on_epoll_io, &mw);
        mw.epio.set(mw.epfd, loop::kRead);
    }

    // Arm. From here on nothing throws except reg_add's and note_armed's allocations, and the
    // destructor undoes whatever was started by then. Every fd is noted armed, in the epoll
    // mode too (where libev never sees it, and a close just ends its events): either way a
    // close behind cogent's back before the hub polls is caught and reported the same.
    IoTable& table = io_table(hub);
    for (nfds_t i = 0; i < nfds; ++i) {
        if (fds[i].fd < 0) continue;
        FdSetEntry& e = mw.entries[mw.n++];
        e.owner = &mw;
        e.fd = fds[i].fd;
        reg_add(&e);
        table.note_armed(e.fd);
        if (direct) {
            int ev = (fds[i].events & (POLLIN | POLLRDNORM) ? loop::kRead : 0) |
                     (fds[i].events & (POLLOUT | POLLWRNORM) ? loop::kWrite : 0);
            e.io.set_callback(&on_entry_io, &e);
            e.io.set(e.fd, ev);
            e.io.start(hub->loop());
        }
    }
    if (mw.epfd >= 0) mw.epio.start(hub->loop());
    if (!timeout.forever())
        mw.p.on_timeout([](void* self) { static_cast<FdSetWait*>(self)->detach(); }, &mw);

    out.timed_out = !mw.p.park(timeout, what);  // kill / Timeout: ~FdSetWait cleans up
    if (mw.closed_fd >= 0) {
        out.closed_fd = mw.closed_fd;
        out.closed_raw = mw.closed_raw;
    }
    out.error_fd = mw.error_fd;
    return out;
}

int count_ready(const pollfd* fds, nfds_t n) {
    int c = 0;
    for (nfds_t i = 0; i < n; ++i) c += fds[i].revents != 0;
    return c;
}

void check_timeout_context(TimeoutArg timeout, const char* what) {
    if (timeout.zero()) return;  // looking once never blocks: fine anywhere, even on the hub
    ThreadState* ts = thread_state_fast();
    HubImpl* hub = hub_of(ts);
    if (ts->current == hub->greenlet) blocking_on_hub(what);
}

// What closed an fd under a select/poll (poll_loop's out-parameter).
struct Closed {
    int fd = -1;
    bool raw = false;  // a close that bypassed cogent::close
};

// poll(2) semantics around park_fds. `closed` receives the fd closed under us, if any.
int poll_loop(pollfd* fds, nfds_t nfds, TimeoutArg timeout, const char* what, Closed* closed) {
    check_timeout_context(timeout, what);
    int r = poll_now(fds, nfds);
    if (r != 0 || timeout.zero()) return r;
    Deadline deadline(timeout);
    for (;;) {
        ParkResult p = park_fds(fds, nfds, deadline.left(), what);
        r = poll_now(fds, nfds);
        if (r < 0) return r;
        if (p.closed_fd >= 0) {
            // The fd is closed (or about to be): whatever the number refers to now is not
            // what the caller asked about.
            for (nfds_t i = 0; i < nfds; ++i)
                if (fds[i].fd == p.closed_fd) fds[i].revents = POLLNVAL;
            if (closed) *closed = Closed{p.closed_fd, p.closed_raw};
            return count_ready(fds, nfds);
        }
        if (p.error_fd == kEpollFailed && r == 0)
            throw std::system_error(EIO, std::generic_category(),
                                    std::string("cogent: ") + what +
                                        ": the event loop cannot watch the wait's epoll fd");
        if (p.error_fd >= 0 && r == 0) {
            // libev could not watch an fd that poll(2) calls quiet; waiting again would spin.
            for (nfds_t i = 0; i < nfds; ++i)
                if (fds[i].fd == p.error_fd) fds[i].revents = POLLERR;
            r = count_ready(fds, nfds);
        }
        if (r > 0 || p.timed_out) return r;
        // A stale wake-up (someone else consumed the data first): wait again.
    }
}

}  // namespace

void fdset_fd_closing(int fd, bool raw) noexcept {
    Registry& r = t_reg;
    if (fd < 0 || std::size_t(fd) >= r.cap) return;
    while (FdSetEntry* e = r.heads[fd]) {
        FdSetWait* mw = e->owner;
        mw->closed_fd = fd;
        mw->closed_raw = raw;
        mw->detach();        // unlinks e and the rest of mw's entries
        mw->p.wake_later();  // never switches: the waiter resumes from the hub's queue
    }
}

std::size_t fdset_watches() noexcept { return t_reg.count; }

void fdset_note_all(IoTable& table) {
    Registry& r = t_reg;
    for (std::size_t fd = 0; fd < r.cap; ++fd)
        if (r.heads[fd]) table.note_armed(int(fd));
}

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

int poll(pollfd* fds, nfds_t nfds, TimeoutArg timeout) {
    try {
        return poll_loop(fds, nfds, timeout, "poll()", nullptr);
    } catch (const std::system_error&) {
        // The wait could not be set up (no fd left for the epoll set, no kernel memory for
        // it): poll(2)'s way to say that is ENOMEM.
        errno = ENOMEM;
        return -1;
    }
}

namespace {
constexpr short kReadSet = POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR;
constexpr short kWriteSet = POLLOUT | POLLWRNORM | POLLWRBAND | POLLHUP | POLLERR;

enum class BadFd { not_open, closed, closed_raw };

[[noreturn]] void select_bad_fd(int fd, BadFd why) {
    const char* what = why == BadFd::closed ? ": file descriptor was closed in another greenlet"
                       : why == BadFd::closed_raw
                           ? ": the fd was closed while select() waited (by a close that "
                             "bypassed cogent::close)"
                           : " is not an open file descriptor";
    throw std::system_error(EBADF, std::generic_category(),
                            "cogent: select(): fd " + std::to_string(fd) + what);
}
}  // namespace

SelectResult select(const std::vector<int>& rlist, const std::vector<int>& wlist,
                    const std::vector<int>& xlist, TimeoutArg timeout) {
    // One pollfd per distinct fd, its mask the union of the lists it is in.
    std::vector<pollfd> pfds;
    pfds.reserve(rlist.size() + wlist.size() + xlist.size());
    std::unordered_map<int, std::size_t> index;
    const bool use_map = rlist.size() + wlist.size() + xlist.size() > 32;
    auto slot = [&](int fd) -> std::size_t {
        if (use_map) {
            auto [it, fresh] = index.try_emplace(fd, pfds.size());
            if (fresh) pfds.push_back(pollfd{fd, 0, 0});
            return it->second;
        }
        for (std::size_t i = 0; i < pfds.size(); ++i)
            if (pfds[i].fd == fd) return i;
        pfds.push_back(pollfd{fd, 0, 0});
        return pfds.size() - 1;
    };
    auto add = [&](const std::vector<int>& list, short ev, const char* name) {
        for (int fd : list) {
            if (fd < 0)
                throw std::invalid_argument("cogent: select(): negative file descriptor (" +
                                            std::to_string(fd) + ") in " + name);
            pfds[slot(fd)].events |= ev;
        }
    };
    add(rlist, POLLIN, "rlist");
    add(wlist, POLLOUT, "wlist");
    add(xlist, POLLPRI, "xlist");

    Closed closed;
    int r = poll_loop(pfds.data(), nfds_t(pfds.size()), timeout, "select()", &closed);
    if (r < 0) throw std::system_error(errno, std::generic_category(), "cogent: select(): poll");
    if (closed.fd >= 0) select_bad_fd(closed.fd, closed.raw ? BadFd::closed_raw : BadFd::closed);
    SelectResult out;
    if (r == 0) return out;
    for (const pollfd& p : pfds)
        if (p.revents & POLLNVAL) select_bad_fd(p.fd, BadFd::not_open);
    auto revents_of = [&](int fd) -> const pollfd& { return pfds[slot(fd)]; };
    for (int fd : rlist)
        if (revents_of(fd).revents & kReadSet) out.readable.push_back(fd);
    for (int fd : wlist)
        if (revents_of(fd).revents & kWriteSet) out.writable.push_back(fd);
    for (int fd : xlist) {
        const pollfd& p = revents_of(fd);
        // An error or hang-up on an fd watched only for exceptions must be reported somewhere,
        // or the caller would never learn of it (and we would wake for it again and again).
        if ((p.revents & POLLPRI) || (p.events == POLLPRI && (p.revents & (POLLHUP | POLLERR))))
            out.exceptional.push_back(fd);
    }
    return out;
}

void Poll::register_fd(int fd, short events) {
    if (fd < 0)
        throw std::invalid_argument("cogent: Poll::register_fd: negative file descriptor (" +
                                    std::to_string(fd) + ")");
    auto [it, fresh] = index_.try_emplace(fd, fds_.size());
    if (!fresh) {
        fds_[it->second].events = events;
        return;
    }
    try {
        fds_.push_back(pollfd{fd, events, 0});
    } catch (...) {
        index_.erase(it);
        throw;
    }
}

void Poll::modify(int fd, short events) {
    auto it = index_.find(fd);
    if (it == index_.end())
        throw std::system_error(
            ENOENT, std::generic_category(),
            "cogent: Poll::modify: fd " + std::to_string(fd) + " is not registered");
    fds_[it->second].events = events;
}

void Poll::unregister(int fd) {
    auto it = index_.find(fd);
    if (it == index_.end())
        throw std::out_of_range("cogent: Poll::unregister: fd " + std::to_string(fd) +
                                " is not registered");
    const std::size_t pos = it->second;
    index_.erase(it);
    fds_.erase(fds_.begin() + std::ptrdiff_t(pos));
    for (std::size_t i = pos; i < fds_.size(); ++i) index_[fds_[i].fd] = i;
}

std::vector<std::pair<int, short>> Poll::poll(TimeoutArg timeout) {
    std::vector<pollfd> fds = fds_;  // registrations may change while we wait
    int r = cogent::poll(fds.data(), nfds_t(fds.size()), timeout);
    if (r < 0) throw std::system_error(errno, std::generic_category(), "cogent: Poll::poll");
    std::vector<std::pair<int, short>> out;
    out.reserve(std::size_t(r));
    for (const pollfd& p : fds)
        if (p.revents) out.emplace_back(p.fd, p.revents);
    return out;
}

}  // namespace cogent
