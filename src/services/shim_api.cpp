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

std::size_t shim_hub_threads(pid_t* out, std::size_t max) noexcept {
    struct Ctx {
        pid_t* out;
        std::size_t max, n;
    } c{out, max, 0};
    for_each_hub(
        [](HubImpl* h, void* p) {
            auto* c = static_cast<Ctx*>(p);
            if (c->n < c->max) c->out[c->n] = h->tid;
            ++c->n;
        },
        &c);
    return c.n;
}

bool shim_hub_running(pid_t tid, char* buf, std::size_t len, std::size_t* others) noexcept {
    struct Ctx {
        pid_t tid;
        char* buf;
        std::size_t len, others;
        bool found;
    } c{tid, buf, len, 0, false};
    for_each_hub(
        [](HubImpl* h, void* p) {
            auto* c = static_cast<Ctx*>(p);
            if (h->tid != c->tid || c->found) return;
            ThreadState* ts = h->ts;
            GreenletImpl* cur = ts->current;
            if (!cur || cur == h->greenlet) return;
            c->found = true;
            cur->describe(c->buf, c->len);
            std::size_t n = 0;
            ts->live.for_each([&](GreenletImpl* g) { n += g != cur && g != h->greenlet; });
            if (cur != ts->main) ++n;  // main is not in `live`
            c->others = n;
        },
        &c);
    if (others) *others = c.others;
    return c.found;
}

double shim_max_blocking_time() { return config().max_blocking_time; }

}  // namespace cogent::detail
