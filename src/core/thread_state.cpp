// The thread state's teardown, the clock, and fork support: what core owns of them, with the
// hub's part reached through the HubOps the hub layer installs.
#include "core/thread_state.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <new>
#include <stdexcept>

#include "cogent/util.hpp"

namespace cogent::detail {

std::uint64_t monotonic_ns() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return std::uint64_t(t.tv_sec) * 1'000'000'000u + std::uint64_t(t.tv_nsec);
}

namespace {
std::atomic<const HubOps*> g_hub_ops{nullptr};

std::atomic<void (*)()> g_fork_hooks[16];
std::atomic<int> g_fork_hook_count{0};

void on_fork_child() {
    // Only the forking thread exists in the child. Its hub's loop shares the parent's epoll fd:
    // the hub makes libev build a new one (and a new async pipe) at its next iteration.
    if (ThreadState* ts = tls_state; ts && ts->hub)
        g_hub_ops.load(std::memory_order_acquire)->after_fork(ts->hub);
    const int n = g_fork_hook_count.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i)
        if (auto hook = g_fork_hooks[i].load(std::memory_order_acquire)) hook();
}
}  // namespace

void set_hub_ops(const HubOps* ops) {
    const HubOps* expected = nullptr;
    if (g_hub_ops.compare_exchange_strong(expected, ops, std::memory_order_acq_rel))
        pthread_atfork(nullptr, nullptr, &on_fork_child);
}

void add_fork_child_hook(void (*hook)()) {
    int i = g_fork_hook_count.fetch_add(1);
    if (i >= 16) {
        g_fork_hook_count.fetch_sub(1);
        throw std::logic_error("cogent: too many fork hooks");
    }
    g_fork_hooks[i].store(hook, std::memory_order_release);
}

ThreadState::~ThreadState() {
    // Only ever destroyed from the main greenlet (see ThreadStateOwner).
    tearing_down = true;
    // The trace function goes first: the unwinding below is not the program's to trace.
    tracing = false;
    delete static_cast<TraceFunction*>(tracer);
    tracer = nullptr;
    // The hub layer installed its ops before it made the hub: it unwinds the greenlets left and
    // stops and deletes the hub (and sets hub to null).
    if (hub) g_hub_ops.load(std::memory_order_acquire)->teardown(this);
    if (altstack) {
        stack_t ss{};
        ss.ss_flags = SS_DISABLE;
        sigaltstack(&ss, nullptr);
        munmap(altstack, 64 * 1024);
    }
    main->release();
    for (std::size_t b = 0; b < kObjBuckets; ++b)
        while (FreeBlock* f = free_objs[b]) {
            free_objs[b] = f->next;
            ::operator delete(f);
        }
}

}  // namespace cogent::detail
