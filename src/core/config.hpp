// Settings: COGENT_* environment variables are read here and nowhere else. Internal.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "core/patch_families.hpp"

namespace cogent::detail {

struct Config {
    std::size_t stack_size;               // COGENT_STACK_SIZE, bytes, page-rounded
    std::size_t threadpool_size = 10;     // COGENT_THREADPOOL_SIZE: get_threadpool()'s maxsize
    unsigned patch_families = kPatchAll;  // COGENT_PATCH: the shim's families (bits of
                                          // patch_families.hpp); all by default
    double max_blocking_time = 0.0;       // COGENT_MAX_BLOCKING_TIME, seconds (0, the default:
                                          // off): the green-thread watchdog's limit
                                          // (patch/watchdog.cpp)
    bool stack_guard_mprotect = false;    // COGENT_STACK_GUARD=mprotect: PROT_NONE guard pages
                                          // even where MADV_GUARD_INSTALL works (gdb's gcore
                                          // stops copying a mapping at a madvise guard)
    bool monitor = false;     // COGENT_MONITOR=1: the blocked-hub monitor (services/monitor.cpp),
                              // with max_blocking_time (0.1 s if unset) as its limit
    int run_info_signal = 0;  // COGENT_RUN_INFO_SIGNAL (SIGQUIT, QUIT, 3...): print run info
                              // to stderr on that signal (services/run_info.cpp); 0: off
};
// Parsed once; a malformed value throws std::invalid_argument naming the variable, every time.
const Config& config();
// COGENT_RESOLVER, _SERVERS, _TIMEOUT, _TRIES, read afresh on each call (each Resolver built
// from the environment). std::invalid_argument naming the variable for a malformed value. The
// resolver (services/dns_options.cpp) parses the kind into Resolver::Kind and checks the
// server entries further.
struct ResolverSettings {
    std::string kind;  // COGENT_RESOLVER as set; empty when unset
    std::vector<std::string> servers;
    std::optional<double> timeout_s;
    std::optional<int> tries;
};
ResolverSettings resolver_settings();
std::size_t page_size() noexcept;

}  // namespace cogent::detail
