// Internal side of io.hpp: the per-hub table of fds with waiters, for sockets and the shim.
#pragma once

#include <ev.h>

#include <vector>

#include "cogent/io.hpp"
#include "runtime.hpp"

namespace cogent::detail {

struct FdWaiter;

// One fd's watchers and waiters on one hub. Allocated on the first wait, freed by
// notify_closing (or when the hub ends).
struct FdState {
    int fd = -1;
    HubImpl* hub = nullptr;
    ev_io io[2]{};                 // [0] read, [1] write
    FdWaiter* waiter[2]{};         // at most one per direction (else ConcurrentObjectUseError)
    bool keep = false;             // leave the read watcher armed after a wake (see fd_wait)
    bool may_read = true;          // false: read watcher armed and silent since fd_drained()
    bool read_unref = false;       // the armed read watcher has no waiter and holds no loop ref
};

struct IoTable {
    explicit IoTable(HubImpl* h) : hub(h) {}
    ~IoTable();
    HubImpl* hub;
    std::vector<FdState*> slots;   // indexed by fd
    FdState* find(int fd) const noexcept {
        return std::size_t(fd) < slots.size() ? slots[std::size_t(fd)] : nullptr;
    }
    FdState* get(int fd);
};

// Park until fd is ready for `events` (READ|WRITE); the ready subset, 0 on timeout. With
// keep_read, the read watcher stays armed after the wake (saving an epoll_ctl per wait on a
// connection that is read again and again); only an fd owner that always closes through
// notify_closing may ask for that. `what` names the wait in errors. known_open: the caller has
// just seen the fd work (a call on it returned EAGAIN), so the fd check that guards libev (it
// aborts on an invalid fd) may be skipped.
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
// select.cpp: wake select/poll calls parked on fd (called by notify_closing); active watches.
void multiwait_fd_closing(int fd) noexcept;
std::size_t multiwait_watches() noexcept;

}  // namespace cogent::detail
