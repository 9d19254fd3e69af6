// Introspection for tests and diagnostics. Counts are for the calling thread.
#pragma once

#include <cstddef>

namespace cogent::debug {

// Greenlets of this thread that started and have not died (main and hub excluded).
std::size_t live_greenlets() noexcept;
// Callbacks queued on this thread's hub (0 if it has none).
std::size_t pending_callbacks() noexcept;
// Active fd watchers (wait_read/wait_write, sockets' armed read watchers, fds select/poll wait on).
std::size_t fd_watchers() noexcept;
// True if this thread has a hub.
bool has_hub() noexcept;
// The default stack size in bytes (COGENT_STACK_SIZE or 256 KiB).
std::size_t default_stack_size();
// Bytes of guard region below each greenlet stack.
std::size_t stack_guard_size() noexcept;
// True once a guard has been installed with MADV_GUARD_INSTALL (false: mprotect fallback, or
// no stack allocated yet).
bool stack_guard_uses_madvise() noexcept;

}  // namespace cogent::debug
