// The hub: one per thread, runs the event loop and the callbacks that resume greenlets.
// Internal.
#pragma once

#include <sys/types.h>

#include <atomic>
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
    void run();            // the hub greenlet's body
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
    void after_fork() noexcept;           // in a forked child, on the thread that forked

    ThreadState* ts;
    GreenletImpl* greenlet = nullptr;
    List<Callback> callbacks;
    bool in_ev_run = false;
    bool break_requested = false;
    bool stopping = false;
    bool park_requested = false;   // teardown: finish the current callback, then yield to main
    bool leave_requested = false;  // stopping || park_requested: the one flag run() tests
    // When the loop last polled (monotonic ns; relaxed: run info reads it from other threads).
    std::atomic<std::uint64_t> last_poll_ns{0};
    // Whether the loop sleeps in the kernel's poll, and its polls: kept only while the monitor
    // watches (services/monitor.cpp).
    loop::Loop::PollWatch polls;
    // Queued behind the callbacks present when run_callbacks starts a round: each of those
    // gets its turn before the next poll, however long the round takes (a burst of starts is
    // not starved by busy I/O); only callbacks queued during the round are cut off by the
    // poll interval. Linked only while run_callbacks runs.
    Callback round_end;
    // The queued callbacks, without round_end.
    std::size_t pending() const noexcept { return callbacks.size() - (round_end.linked() ? 1 : 0); }
    pid_t tid = 0;          // the hub's OS thread (gettid), for for_each_hub's users
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
    cur->wait_since_ns = last_poll_ns.load(std::memory_order_relaxed);
    jump(ts, cur, greenlet);
    cur->waiting_on = nullptr;
    raise_pending(cur);
    if (cur->transfer.has_value()) [[unlikely]]
        cur->transfer.reset();  // a stray raw switch with a value; the waiter reports it
}

HubImpl* create_hub(ThreadState* ts);

// Every hub of the process, for a thread that looks at them from outside (the shim's
// watchdog): fn(hub, ctx) runs for each under the registry's lock, so that none is destroyed
// meanwhile. fn must neither block nor call into the hubs.
void for_each_hub(void (*fn)(HubImpl* hub, void* ctx), void* ctx) noexcept;

// What the layers above keep per hub (io's fd table, the resolvers, the main hub's signal
// watchers) is set up and torn down through these hooks, so that the hub never calls upward.
// A file that keeps such state registers its hooks once per process, at static initialisation
// (HubHooksRegistration); any of them may be null. Within a phase, hooks run in registration
// order, so those of different files must not depend on each other.
struct HubHooks {
    // A hub was made (the end of its constructor), on its thread.
    void (*created)(HubImpl* hub) noexcept = nullptr;
    // ~HubImpl, first: forget the hub and release what may still queue callbacks (those are
    // dropped unrun right after).
    void (*closing)(HubImpl* hub) noexcept = nullptr;
    // ~HubImpl, once the queued callbacks were dropped and before the loop goes: stop the
    // watchers still on the loop and free the state.
    void (*destroy)(HubImpl* hub) noexcept = nullptr;
    // In a forked child, for the forking thread's hub: after its loop was told of the fork,
    // before the fork-child hooks (add_fork_child_hook).
    void (*after_fork)(HubImpl* hub) noexcept = nullptr;
};
void add_hub_hooks(const HubHooks& hooks);  // at most 8 sets
struct HubHooksRegistration {
    explicit HubHooksRegistration(const HubHooks& hooks) { add_hub_hooks(hooks); }
};
inline HubImpl* hub_of(ThreadState* ts) {  // creates on first use
    HubImpl* h = ts->hub;
    return h ? h : create_hub(ts);
}

}  // namespace cogent::detail
