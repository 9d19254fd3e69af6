// Waiting on file descriptors: the one helper that sockets, pipes, select/poll and the patch
// shim are built on. Every cooperative I/O call is "try the call; on EAGAIN park on the fd;
// retry", and the park is wait_read / wait_write.
#pragma once

#include <stdexcept>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

// Readiness directions, for wait_fd and poll-style masks.
inline constexpr int READ = 1;
inline constexpr int WRITE = 2;

// Two greenlets tried to wait for the same direction of one fd (gevent's
// ConcurrentObjectUseError). The message names the fd, the socket's addresses when it is one,
// and the greenlet already waiting.
class COGENT_API ConcurrentObjectUseError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// Block the current greenlet until fd is readable: true, or `timeout` passed first: false.
// "Readable" includes end of file, a hang-up and a pending error: the next read says which.
// Throws std::system_error(EBADF) when the fd is closed through cogent::close (or
// notify_closing) while waiting, or is not an open fd (checked when the hub next polls, which
// also catches a raw close(2) made before then; one made later goes unseen and the wait lasts
// until its timeout, see select.hpp); ConcurrentObjectUseError when another
// greenlet of this thread already waits to read it; std::invalid_argument for a negative fd;
// BlockingSwitchOutError on the hub. Kill and Timeout interrupt it; no watcher is left behind.
// Call from a greenlet (or the main greenlet) of the thread that owns the fd's waits.
COGENT_API bool wait_read(int fd, TimeoutArg timeout = {});
// Same for writable.
COGENT_API bool wait_write(int fd, TimeoutArg timeout = {});
// Wait for any of `events` (READ, WRITE or both); returns the ready subset, 0 on timeout.
// std::invalid_argument for an empty or unknown mask. Otherwise as wait_read.
COGENT_API int wait_fd(int fd, int events, TimeoutArg timeout = {});

// Wake every greenlet of the calling thread that waits on fd, each with
// std::system_error(EBADF, "file descriptor was closed in another greenlet"), and drop fd's
// watchers. Call it before the fd is closed, so that no watcher outlives the fd and no waiter
// sees a reused number. Never switches; safe on the hub and on an fd nobody waits on.
COGENT_API void notify_closing(int fd) noexcept;
// notify_closing(fd), then close(2). Returns what close(2) returns, errno as close(2) sets it.
COGENT_API int close(int fd) noexcept;

}  // namespace cogent
