// The hub: one per thread, runs the event loop and the callbacks that resume greenlets.
// Internal.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "core/switch.hpp"
#include "core/thread_state.hpp"
#include "loop/loop.hpp"

namespace cogent::detail {

struct IoTable;
struct DnsHub;
// dns_resolver.cpp: drop every resolver channel on `hub` (its watchers are on the hub's loop).
void dns_hub_teardown(HubImpl* hub) noexcept;

// After the hub is resumed: report what a raw greenlet parented to the hub handed it.
void after_hub_resume(GreenletImpl* hub);

class HubImpl {
public:
    explicit HubImpl(ThreadState* ts);
    ~HubImpl();
    HubImpl(const HubImpl&) = delete;

    void schedule(Callback* cb) noexcept {
        callbacks.push_back(cb);
        if (in_ev_run && !break_requested) request_break();
    }
    // Block the current greenlet: switch to the hub; returns when resumed, throws what was
    // thrown into it. `what` names the wait for LoopExit messages.
    void switch_out(GreenletImpl* cur, const char* what);
    void run();  // the hub greenlet's body
    void stop_and_join();  // teardown: make run() return
    void request_break() noexcept;
    // Teardown: make the hub hand control back to main at its next safe point (after the
    // callback it is in, or out of a poll), whatever keeps its loop alive.
    void request_park() noexcept;
    void update_now() noexcept { loop_.update_now(); }
    // The hub's event loop, for the watchers of loop/watchers.hpp.
    loop::Loop& loop() noexcept { return loop_; }
    std::uint64_t thread_index() const noexcept { return index_; }

    // Cross-thread entry: queue fn to run on this hub (any thread may call).
    void run_threadsafe(std::function<void()> fn);
    void keep_alive(int delta) noexcept;  // hold/release a reference on the loop (hub thread)
    void after_fork() noexcept;  // in a forked child, on the thread that forked

    ThreadState* ts;
    GreenletImpl* greenlet = nullptr;
    List<Callback> callbacks;
    bool in_ev_run = false;
    bool break_requested = false;
    bool stopping = false;
    bool park_requested = false;  // teardown: finish the current callback, then yield to main
    bool leave_requested = false;  // stopping || park_requested: the one flag run() tests
    std::uint64_t last_poll_ns = 0;
    IoTable* io = nullptr;  // fds with waiters (io.cpp); created on the first fd wait
    DnsHub* dns = nullptr;  // this hub's resolvers (dns_resolver.cpp); created on the first one

private:
    void run_callbacks();
    void poll(bool nowait);
    static void on_wakeup(void* self);
    std::mutex remote_mu_;
    std::vector<std::function<void()>> remote_;
    std::uint64_t index_ = 0;
    // Destroyed first of the members, after ~HubImpl has stopped the watchers on it; last in
    // the object, out of the way of the fields the callback loop uses.
    loop::Loop loop_;
};

[[noreturn, gnu::cold]] void blocking_on_hub(const char* what);

// Inline so that the jump is made from the blocking function's own frame.
[[gnu::always_inline]] inline void HubImpl::switch_out(GreenletImpl* cur, const char* what) {
    if (cur == greenlet) [[unlikely]]
        blocking_on_hub(what);
    cur->waiting_on = what;
    jump(ts, cur, greenlet);
    cur->waiting_on = nullptr;
    raise_pending(cur);
    if (cur->transfer.has_value()) [[unlikely]]
        cur->transfer.reset();  // a stray raw switch with a value; the waiter reports it
}

HubImpl* create_hub(ThreadState* ts);
// fork() support. In the child, the forking thread's hub is reinitialised (Loop::fork, its
// cross-thread queue reset) and then each registered hook runs, in registration order, on the
// child's only thread (the thread pool forgets its workers, the resolver rebuilds its channel).
// Registration is for the runtime's own subsystems; at most 16 hooks.
void add_fork_child_hook(void (*hook)());
// signal.cpp: record (alive) or forget the main thread's hub, the one on libev's default loop.
void set_main_hub(HubImpl* hub, bool alive) noexcept;
inline HubImpl* hub_of(ThreadState* ts) {  // creates on first use
    HubImpl* h = ts->hub;
    return h ? h : create_hub(ts);
}

}  // namespace cogent::detail
