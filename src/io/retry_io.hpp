// The I/O retry loop on the runtime's fd table: make a non-blocking call; when the kernel says
// EAGAIN, park the greenlet on the fd (fd_wait) and make it again. Sockets, pipes and (through
// shim_api.hpp, the same loop) the patch shim's socket hooks all go through it; each keeps only
// its own call (the attempt) and its own way of reporting an error or a timeout. The loop
// itself, IoDeadline, IoResult and IoOpts: retry_loop.hpp.
#pragma once

#include <utility>

#include "io/fdwait.hpp"
#include "io/retry_loop.hpp"

namespace cogent::detail {

// The parking step of retry_io: > 0 ready, 0 the time ran out. A kill, a Timeout, a close of
// the fd by another greenlet or a second waiter on the fd (ConcurrentObjectUseError) throw.
struct FdPark {
    int operator()(int fd, int events, TimeoutArg left, bool keep_read, const char* what,
                   bool known_open) const {
        return fd_wait(fd, events, left, keep_read, what, known_open);
    }
};

// The read-readiness hint of retry_loop, read inline from the fd table.
struct FdHint {
    static bool may_read(int fd) noexcept { return fd_may_read(fd); }
    static void drained(int fd) noexcept { fd_drained(fd); }
};

// retry_loop (retry_loop.hpp) with the fd table's hint; park: FdPark, or a replacement with
// its contract that may also return < 0 (failed, errno set: the result is {-1, errno}).
template <class Attempt, class Park = FdPark>
inline IoResult retry_io(Attempt&& attempt, int fd, int events, IoDeadline& deadline,
                         const char* what, IoOpts opts = {}, Park&& park = {}) {
    return retry_loop<FdHint>(std::forward<Attempt>(attempt), fd, events, deadline, what, opts,
                              std::forward<Park>(park));
}

}  // namespace cogent::detail
