// Cooperative select and poll over arbitrary file descriptors (gevent.select): only the calling
// greenlet waits; the rest of the thread keeps running.
#pragma once

#include <poll.h>

#include <cstddef>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

// What select() found ready, each list in the order of the corresponding argument (an fd given
// twice is reported twice, as gevent does). Works with structured bindings:
// `auto [r, w, x] = cogent::select(...)`.
struct COGENT_API SelectResult {
    std::vector<int> readable;
    std::vector<int> writable;
    std::vector<int> exceptional;
};

// Wait until at least one fd of rlist is readable, one of wlist writable or one of xlist has an
// exceptional condition (POLLPRI: TCP urgent data), then report every fd ready at that moment.
// Timeout absent: wait forever; zero: look once and return; when it passes, the lists are
// empty. Readable as select(2) says: data, end of file, a hang-up or a pending error. Unlike
// gevent (which ignores xlist while waiting) xlist is watched. An fd that hangs up is reported
// ready for reading and writing (a write fails at once rather than blocking); a hang-up or error
// on an fd given only in xlist is reported in `exceptional`.
// Not built on fd_set: fds >= FD_SETSIZE (1024) are fine, and the cost is per fd given, not per
// fd number. Any number of greenlets may select on the same fd, and alongside a Socket or
// wait_read waiting on it (select uses watchers of its own).
// Throws std::invalid_argument for a negative fd (and, through TimeoutArg, a negative timeout);
// std::system_error(EBADF) naming the fd when it is not open, or when it is closed through
// cogent::close / notify_closing on this thread while select waits (gevent's "file descriptor
// was closed in another greenlet"), or by a close that bypasses cogent (a raw close(2), or one
// from another thread) before the hub next polls. A raw close after that goes unseen, as a
// close in another thread does for select(2) on Linux: the wait lasts until the timeout. A
// number closed and reused by a new file before the hub polls is watched as the new file.
// std::system_error (EMFILE...) when a wait with xlist cannot create its epoll set;
// BlockingSwitchOutError when called on the hub with a non-zero timeout. Kill and Timeout
// interrupt it and leave no watcher behind.
// Call from any greenlet of the thread that uses the fds.
COGENT_API SelectResult select(const std::vector<int>& rlist, const std::vector<int>& wlist,
                               const std::vector<int>& xlist, TimeoutArg timeout = {});

// poll(2), cooperatively: the same contract as the system call except that only the calling
// greenlet waits. Fills every revents, returns how many entries have a non-zero revents, 0 when
// the timeout passes (absent: wait forever; zero: look once). Entries with fd < 0 are ignored
// (revents 0); an fd that is not open reports POLLNVAL instead of throwing; an fd closed
// through cogent::close / notify_closing while poll waits reports POLLNVAL too, as does one
// closed by a close that bypasses cogent before the hub next polls (after that, as select
// says). Any event bits
// are honoured (POLLIN, POLLOUT, POLLPRI, POLLRDHUP, ...; POLLERR and POLLHUP always); masks
// beyond POLLIN/POLLOUT take a slower path (a private epoll set per call).
// Returns -1 with errno as poll(2) sets it for a bad array (EFAULT), too many entries (EINVAL)
// or ENOMEM (also when the wait cannot be set up: no fd left for that epoll set); never fails
// with EINTR. Throws BlockingSwitchOutError on the hub with a non-zero timeout (that would block
// the whole thread), and what kill and Timeout throw.
// Call from any greenlet of the thread that uses the fds.
COGENT_API int poll(pollfd* fds, nfds_t nfds, TimeoutArg timeout = {});

// gevent's select.poll(): a set of registered fds polled together. Not thread-safe; belongs to
// one thread. Several greenlets may poll() it at once (each sees the registrations made before
// its call).
class COGENT_API Poll {
public:
    // gevent's and Python's default event mask.
    static constexpr short kDefaultEvents = POLLIN | POLLPRI | POLLOUT;

    // Register fd for `events` (registering again replaces its mask, as in Python).
    // std::invalid_argument for a negative fd.
    void register_fd(int fd, short events = kDefaultEvents);
    // Change the mask of a registered fd; std::system_error(ENOENT) when fd is not registered
    // (Python raises FileNotFoundError).
    void modify(int fd, short events);
    // Forget fd; std::out_of_range when it is not registered (Python raises KeyError).
    void unregister(int fd);
    // Wait as cogent::poll does; returns (fd, revents) for every fd with events, in
    // registration order (POLLNVAL for an fd that is not open). Empty when the timeout passes.
    // Throws std::system_error if poll(2) itself fails (ENOMEM), and as cogent::poll.
    std::vector<std::pair<int, short>> poll(TimeoutArg timeout = {});
    // Number of registered fds.
    std::size_t size() const noexcept { return fds_.size(); }

private:
    std::vector<pollfd> fds_;                     // in registration order
    std::unordered_map<int, std::size_t> index_;  // fd -> position in fds_
};

}  // namespace cogent
