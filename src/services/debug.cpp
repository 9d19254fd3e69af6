#include "cogent/debug.hpp"

#include "hub/hub.hpp"
#include "io/fdwait.hpp"

namespace cogent::debug {

using namespace detail;

std::size_t live_greenlets() noexcept {
    ThreadState* ts = tls_state;
    if (!ts) return 0;
    std::size_t n = 0;
    ts->live.for_each([&](GreenletImpl* g) {
        if (!ts->hub || g != ts->hub->greenlet) ++n;
    });
    return n;
}

std::size_t pending_callbacks() noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub ? ts->hub->pending() : 0;
}

std::size_t fd_watchers() noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || !ts->hub->io) return fdset_watches();
    std::size_t n = fdset_watches();
    for (FdState* s : ts->hub->io->slots)
        if (s) n += std::size_t(s->io[0].active()) + std::size_t(s->io[1].active());
    return n;
}

bool has_hub() noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub;
}

std::size_t default_stack_size() { return config().stack_size; }
std::size_t stack_guard_size() noexcept { return StackPool::kGuard; }
bool stack_guard_uses_madvise() noexcept { return StackPool::guard_via_madvise(); }

}  // namespace cogent::debug
