// Asking at run time what the monkey patch (libcogent_patch.so) covers: gevent's
// monkey.is_module_patched / saved. The shim is loaded with LD_PRELOAD (or the launcher
// `cogent-run`) or linked into the program; which families it patches comes from COGENT_PATCH
// (all|none|socket,dns,time,select,sync,thread), read once when it loads. "all" is every
// family but "thread" (threads as greenlets, opt-in); "thread" brings "sync" with it.
#pragma once

#include <string>

#include "cogent/detail/export.hpp"

namespace cogent::patch {

// Family bits, as COGENT_PATCH names them.
enum Family : unsigned {
    socket = 1,
    dns = 2,
    time = 4,
    select = 8,
    sync = 16,    // pthread mutexes, conditions, rwlocks... and private futexes: cooperative
    thread = 32,  // pthread_create starts a greenlet (not in all)
    all = 31
};

// True when libcogent_patch.so is loaded in this process.
COGENT_API bool loaded() noexcept;
// The patched families (0 when the shim is not loaded).
COGENT_API unsigned families() noexcept;
// True when `family` is patched.
COGENT_API bool is_patched(Family family) noexcept;
// "socket,dns,time,select,sync", "none", or "not loaded".
COGENT_API std::string describe();

}  // namespace cogent::patch
