// Introspection for tests and diagnostics. Counts are for the calling thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "cogent/detail/export.hpp"

namespace cogent::debug {

// Greenlets of this thread that started and have not died (main and hub excluded).
COGENT_API std::size_t live_greenlets() noexcept;
// Callbacks queued on this thread's hub (0 if it has none).
COGENT_API std::size_t pending_callbacks() noexcept;
// Active fd watchers (wait_read/wait_write, sockets' armed read watchers, fds select/poll wait on).
COGENT_API std::size_t fd_watchers() noexcept;
// True if this thread has a hub.
COGENT_API bool has_hub() noexcept;
// The default stack size in bytes (COGENT_STACK_SIZE or 256 KiB).
COGENT_API std::size_t default_stack_size();
// Bytes of guard region below each greenlet stack.
COGENT_API std::size_t stack_guard_size() noexcept;
// True once a guard has been installed with MADV_GUARD_INSTALL (false: mprotect fallback, or
// no stack allocated yet).
COGENT_API bool stack_guard_uses_madvise() noexcept;

// Subprocess spawns (subprocess::Popen and everything built on it), for the whole process
// (all threads), since the start or the last reset_spawn_stats(). "Hub time" is how long the
// calling OS thread was held inside a spawn without running anything else: its hub, and so
// every other greenlet of that thread, was stalled that long.
struct COGENT_API SpawnStats {
    std::uint64_t count = 0;               // spawns attempted (successful or not)
    std::uint64_t inline_count = 0;        // of those, done on the calling thread itself
    std::chrono::nanoseconds hub_total{};  // sum of the hub time of all spawns
    std::chrono::nanoseconds hub_max{};    // the longest hub time of one spawn
    // The mean hub time per spawn (zero when there was none).
    std::chrono::nanoseconds hub_avg() const noexcept {
        return count ? hub_total / std::int64_t(count) : std::chrono::nanoseconds{};
    }
};
// The counters so far.
COGENT_API SpawnStats spawn_stats() noexcept;
// Zero them.
COGENT_API void reset_spawn_stats() noexcept;

}  // namespace cogent::debug
