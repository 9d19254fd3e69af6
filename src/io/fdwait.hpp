// Internal side of io.hpp: the per-hub table of fds with waiters, for sockets and the shim.
#pragma once

#include <poll.h>

#include <vector>

#include "cogent/io.hpp"
#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent::detail {

struct FdWaiter;

// One fd's watchers and waiters on one hub. Allocated on the first wait, freed by
// notify_closing (or when the hub ends).
struct FdState {
    int fd = -1;
    loop::Io io[2];         // [0] read, [1] write; data(): this
    FdWaiter* waiter[2]{};  // at most one per direction (else ConcurrentObjectUseError)
    bool keep = false;      // leave the read watcher armed after a wake (see fd_wait)
    bool may_read = true;   // false: read watcher armed and silent since fd_drained()
    // A kept read watcher with no waiter is unreferenced (io[0].unref()): it cannot keep the
    // loop alive by itself.
};

// The per-hub fd layer. Besides the fd_wait table it guards libev against fds closed behind
// cogent's back: libev hands a started watcher's fd to epoll_ctl only at the loop's next
// iteration, and aborts the process (an assert in epoll_modify) when epoll_ctl says EBADF. So
// every fd given a watcher is noted (note_armed), and a prepare watcher, which libev runs just
// before it reifies fds, checks them all with one ppoll: a closed one has its waiters woken
// with EBADF (select/poll: POLLNVAL) and its watchers stopped, so libev never sees it.
struct IoTable {
    explicit IoTable(HubImpl* h);
    ~IoTable();
    HubImpl* hub;
    std::vector<FdState*> slots;  // indexed by fd
    std::vector<pollfd> armed;    // fds given a watcher since the last check (events 0)
    loop::Prepare guard;          // runs check_armed; active only while `armed` is not empty
    FdState* find(int fd) const noexcept {
        return std::size_t(fd) < slots.size() ? slots[std::size_t(fd)] : nullptr;
    }
    FdState* get(int fd);
    // Call before starting an fd watcher on fd (it may throw bad_alloc; nothing is armed then).
    void note_armed(int fd);
};

// hub's IoTable, created on first use.
inline IoTable& io_table(HubImpl* hub) {
    return hub->io ? *hub->io : *(hub->io = new IoTable(hub));
}
// In a forked child (HubImpl::after_fork): libev re-adds every watched fd to a new epoll set
// before its next poll, so every fd with a watcher is checked first.
void fd_after_fork(HubImpl* hub) noexcept;

// Park until fd is ready for `events` (READ|WRITE); the ready subset, 0 on timeout. With
// keep_read, the read watcher stays armed after the wake (saving an epoll_ctl per wait on a
// connection that is read again and again); only an fd owner that always closes through
// notify_closing may ask for that. `what` names the wait in errors. Whether fd is open is
// checked just before libev first hands it to the kernel (IoTable), which also catches a close
// that comes after this call. known_open: the caller has just seen the fd work (a call on it
// returned EAGAIN), so a watcher already armed on it needs no check.
int fd_wait(int fd, int events, TimeoutArg timeout, bool keep_read, const char* what,
            bool known_open = false);

// Read-readiness hint for keep_read owners: false only when fd's read watcher is armed and has
// not fired since fd_drained(fd), so a read would almost surely give EAGAIN and the caller may
// park at once. Data arriving meanwhile fires the (level-triggered) watcher: nothing is lost.
inline bool fd_may_read(int fd) noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || !ts->hub->io) return true;
    FdState* s = ts->hub->io->find(fd);
    return !s || s->may_read;
}
// The last read drained fd (EAGAIN, or a short read on a stream socket).
void fd_drained(int fd) noexcept;
// select.cpp: wake select/poll calls parked on fd and drop their watchers (called by
// notify_closing, and with raw set when the fd turned out to be closed already, by a close
// that notify_closing never saw); active watches; note every watched fd as armed (fork).
void fdset_fd_closing(int fd, bool raw = false) noexcept;
std::size_t fdset_watches() noexcept;
// The greenlet parked in a waiter (run info).
const GreenletImpl* waiter_greenlet(const FdWaiter* w) noexcept;
void fdset_note_all(IoTable& table);

}  // namespace cogent::detail
