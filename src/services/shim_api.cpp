// The functions of shim_api.hpp: thin wrappers over the runtime's internals, so that
// libcogent_patch.so sees none of their layouts.
#include "services/shim_api.hpp"

#include "core/config.hpp"
#include "core/thread_state.hpp"
#include "hub/hub.hpp"
#include "io/fdwait.hpp"

namespace cogent::detail {

bool shim_green_context_slow() noexcept {
    ThreadState* ts = tls_state;
    if (!ts) return false;
    HubImpl* hub = ts->hub;
    return hub && ts->current != hub->greenlet;
}

bool shim_thread_has_hub_slow() noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub;
}

unsigned shim_patch_families() { return config().patch_families; }

int shim_fd_wait(int fd, int events, TimeoutArg timeout, bool keep_read, const char* what,
                 bool known_open) {
    return fd_wait(fd, events, timeout, keep_read, what, known_open);
}

bool shim_fd_may_read(int fd) noexcept { return fd_may_read(fd); }

void shim_fd_drained(int fd) noexcept { fd_drained(fd); }

bool shim_current_stack(void** lo, std::size_t* size) noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || ts->current == ts->hub->greenlet || !ts->current->stack_lo) return false;
    *lo = ts->current->stack_lo;
    *size = ts->current->stack_size;
    return true;
}

}  // namespace cogent::detail
