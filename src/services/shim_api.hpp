// The one door from libcogent_patch.so (patch/) and libcogent_tls.so (src/tls/: its fd waits)
// into the runtime: plain functions, exported from libcogent.so (COGENT_INTERNAL_API), and no
// struct layouts, so that the shim never
// compiles against HubImpl, ThreadState or the fd table and can be rebuilt independently of
// their shapes. patch/ includes no other header of src/ (this one brings in four without
// layouts of the runtime: core/patch_families.hpp, core/raw_syscall.hpp, io/retry_loop.hpp,
// and wait/lot.hpp, the parking lot's functions, which the sync family builds on). Internal.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <utility>

#include "cogent/detail/core.hpp"  // detail::tls_core (the public switch core's thread pointer)
#include "cogent/detail/export.hpp"
#include "cogent/io.hpp"
#include "cogent/time.hpp"
#include "core/patch_families.hpp"  // the COGENT_PATCH grammar, for cogent-run (header-only)
#include "core/raw_syscall.hpp"     // system calls without libc (the shim's syscall())
#include "io/retry_loop.hpp"        // the I/O retry loop (header-only, no layouts of src/)
#include "wait/lot.hpp"             // the parking lot: waits keyed by address (functions)

namespace cogent::detail {

// True when the calling thread has a hub and runs one of its greenlets other than the hub
// itself: the shim's "make this call cooperative?" test (patch/shim.hpp's cooperative()).
// A thread that never used cogent is answered inline from one thread-local load; others pay
// one call into libcogent.
COGENT_INTERNAL_API bool shim_green_context_slow() noexcept;
inline bool shim_in_green_context() noexcept {
    if (!tls_core) [[likely]]
        return false;
    return shim_green_context_slow();
}
// True when the calling thread has a hub (so a close must be announced: notify_closing).
COGENT_INTERNAL_API bool shim_thread_has_hub_slow() noexcept;
inline bool shim_thread_has_hub() noexcept { return tls_core && shim_thread_has_hub_slow(); }

// The patched families from COGENT_PATCH (config()); std::invalid_argument for a bad value.
COGENT_INTERNAL_API unsigned shim_patch_families();

// fd_wait (src/io/fdwait.hpp): park until fd is ready for `events` (READ|WRITE); the ready
// subset, 0 on timeout. Throws ConcurrentObjectUseError for a second waiter in a direction,
// std::system_error(EBADF) for an fd closed meanwhile, and what a kill or Timeout raise.
COGENT_INTERNAL_API int shim_fd_wait(int fd, int events, TimeoutArg timeout, bool keep_read,
                                     const char* what, bool known_open);
// The read-readiness hint and its reset (fd_may_read, fd_drained in src/io/fdwait.hpp).
COGENT_INTERNAL_API bool shim_fd_may_read(int fd) noexcept;
COGENT_INTERNAL_API void shim_fd_drained(int fd) noexcept;

// The running greenlet's stack (the lowest usable byte and the usable size), for
// pthread_getattr_np of a green thread; false outside a greenlet of a hub.
COGENT_INTERNAL_API bool shim_current_stack(void** lo, std::size_t* size) noexcept;

// The green-thread watchdog (patch/watchdog.cpp) looks at the hubs from its own thread.
// Up to max hubs' OS threads (gettid) into out; how many hubs there are.
COGENT_INTERNAL_API std::size_t shim_hub_threads(pid_t* out, std::size_t max) noexcept;
// Describe the greenlet that the hub of OS thread tid runs into buf, and count the other
// greenlets alive on that thread (main included); false when that thread has no hub or the
// hub itself runs. The caller makes sure that thread is not running meanwhile (it is blocked
// in a system call, seen before and after the call): the fields read are then stable.
COGENT_INTERNAL_API bool shim_hub_running(pid_t tid, char* buf, std::size_t len,
                                          std::size_t* others) noexcept;
// COGENT_MAX_BLOCKING_TIME in seconds (0: off); std::invalid_argument for a bad value.
COGENT_INTERNAL_API double shim_max_blocking_time();

// The I/O retry loop (io/retry_loop.hpp, the one the runtime's retry_io uses) on the
// functions above: that one reads the fd table inline, this one must not see it.
namespace shim {

using detail::IoDeadline;
using detail::IoOpts;
using detail::IoResult;

struct Hint {
    static bool may_read(int fd) noexcept { return shim_fd_may_read(fd); }
    static void drained(int fd) noexcept { shim_fd_drained(fd); }
};

// park(fd, events, left, keep_read, what, known_open): > 0 ready, 0 timed out, < 0 failed
// with errno set.
template <class Attempt, class Park>
inline IoResult retry_io(Attempt&& attempt, int fd, int events, IoDeadline& deadline,
                         const char* what, IoOpts opts, Park&& park) {
    return retry_loop<Hint>(std::forward<Attempt>(attempt), fd, events, deadline, what, opts,
                            std::forward<Park>(park));
}

}  // namespace shim

}  // namespace cogent::detail
