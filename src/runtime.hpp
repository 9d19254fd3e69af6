// Internal runtime state: per-thread state, the stack pool, the hub. Not installed.
#pragma once

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cogent/detail/core.hpp"

#define COGENT_TLS_IE __attribute__((tls_model("initial-exec")))

namespace cogent::detail {

// ---- settings (COGENT_* environment variables are read here and nowhere else) ----
struct Config {
    std::size_t stack_size;  // COGENT_STACK_SIZE, bytes, page-rounded
    std::size_t threadpool_size = 10;  // COGENT_THREADPOOL_SIZE: get_threadpool()'s maxsize
    unsigned patch_families = 15;      // COGENT_PATCH: the shim's families (1 socket, 2 dns,
                                       // 4 time, 8 select); all by default
};
// Parsed once; a malformed value throws std::invalid_argument naming the variable, every time.
const Config& config();
// COGENT_RESOLVER, _SERVERS, _TIMEOUT, _TRIES, read afresh on each call (each Resolver built
// from the environment). std::invalid_argument naming the variable for a malformed value; the
// server entries are checked further by dns.cpp.
struct ResolverSettings {
    int kind = 0;  // 0 ares, 1 thread, 2 block
    std::vector<std::string> servers;
    std::optional<double> timeout_s;
    std::optional<int> tries;
};
ResolverSettings resolver_settings();
std::size_t page_size() noexcept;

// ---- stacks ----
// Stacks are carved from slabs (one mmap holds many stacks, so the number of mappings stays
// far below vm.max_map_count), each stack with a guard region below it installed with
// MADV_GUARD_INSTALL (no VMA split) or, on kernels without it, mprotect. Freed stacks are kept
// for reuse; beyond `kHot` of them their pages are returned to the kernel (MADV_DONTNEED) but
// the address range stays reserved, so spawn never calls mmap in the steady state. Pages are
// given back in batches, sorted and coalesced into runs of neighbouring stacks, so a wave of
// greenlets ending costs a handful of madvise calls, not one each.
class StackPool {
public:
    static constexpr std::size_t kGuard = 16 * 1024;
    static constexpr std::size_t kHot = 256;
    StackPool() = default;
    StackPool(const StackPool&) = delete;
    ~StackPool();
    // Lowest usable address of a stack of `size` bytes (size must be page-rounded).
    void* acquire(std::size_t size);
    void release(void* lo, std::size_t size) noexcept;
    // True if `addr` lies in the guard region below the stack starting at `lo`.
    static bool in_guard(const void* addr, const void* lo) noexcept {
        auto a = reinterpret_cast<std::uintptr_t>(addr), l = reinterpret_cast<std::uintptr_t>(lo);
        return a < l && a >= l - kGuard;
    }
    static bool guard_via_madvise() noexcept;

private:
    struct SizeClass {
        std::vector<void*> free;  // LIFO: the most recently freed (warmest) at the back
        std::size_t cold = 0;     // free[0, cold) have had their pages given back
    };
    void trim(SizeClass& sc, std::size_t size) noexcept;
    SizeClass& size_class(std::size_t size) {
        if (size == last_size_) [[likely]]
            return *last_class_;
        SizeClass& sc = classes_[size];  // node-based: the reference stays valid
        last_size_ = size;
        last_class_ = &sc;
        return sc;
    }
    std::unordered_map<std::size_t, SizeClass> classes_;
    std::size_t last_size_ = 0;
    SizeClass* last_class_ = nullptr;
    std::vector<std::pair<void*, std::size_t>> slabs_;
};

// ---- per-thread state ----
class MainGreenlet;
struct IoTable;
struct DnsHub;
// dns.cpp: drop every resolver channel on `hub` (its watchers are on the hub's loop).
void dns_hub_teardown(HubImpl* hub) noexcept;

struct ThreadState : ThreadCore {
    ThreadState();
    ~ThreadState();
    // Teardown, from main with the hub parked: throw GreenletExit into every greenlet left,
    // let the hub run their blocking cleanups for a bounded time, report those that stay.
    void unwind_greenlets();
    MainGreenlet* main = nullptr;
    HubImpl* hub = nullptr;
    StackPool stacks;
    List<GreenletImpl> live;  // started, not yet dead (main and hub excluded)
    std::uint64_t next_id = 1;
    bool tearing_down = false;
    void* altstack = nullptr;
    std::size_t default_stack = 0;  // config().stack_size, page-rounded, read once
    // Freed greenlet-state blocks by 64-byte size class (see GreenletImpl::operator new).
    static constexpr std::size_t kObjBuckets = 16;  // blocks up to 960 bytes
    static constexpr std::size_t kObjCap = 65536;   // blocks kept per class
    struct FreeBlock {
        FreeBlock* next;
    };
    FreeBlock* free_objs[kObjBuckets] = {};
    std::size_t free_counts[kObjBuckets] = {};
};

extern thread_local ThreadState* tls_state COGENT_TLS_IE;
ThreadState* thread_state();  // creates on first use
inline ThreadState* thread_state_fast() {
    ThreadState* ts = tls_state;
    return ts ? ts : thread_state();
}

class MainGreenlet final : public GreenletImpl {
public:
    explicit MainGreenlet(ThreadState* ts);
    void body() override {}
    void describe(char* buf, std::size_t len) const noexcept override;
};

// Install the process-wide SIGSEGV handler (stack overflow report) and this thread's
// alternate signal stack.
void install_overflow_handler(ThreadState* ts);

// ---- the hub ----

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
    void stop_and_join(ThreadState* ts);  // teardown: make run() return
    void request_break() noexcept;
    // Teardown: make the hub hand control back to main at its next safe point (after the
    // callback it is in, or out of a poll), whatever keeps its loop alive.
    void request_park() noexcept;
    void update_now() noexcept { ev_now_update(loop); }
    std::uint64_t thread_index() const noexcept { return index_; }

    // Cross-thread entry: queue fn to run on this hub (any thread may call).
    void run_threadsafe(std::function<void()> fn);
    void keep_alive(int delta) noexcept;
    void after_fork() noexcept;  // in a forked child, on the thread that forked  // hold/release a reference on the loop from the hub thread

    ThreadState* ts;
    struct ev_loop* loop = nullptr;
    GreenletImpl* greenlet = nullptr;
    List<Callback> callbacks;
    bool in_ev_run = false;
    bool break_requested = false;
    bool stopping = false;
    bool park_requested = false;  // teardown: finish the current callback, then yield to main
    bool leave_requested = false;  // stopping || park_requested: the one flag run() tests
    std::uint64_t last_poll_ns = 0;
    IoTable* io = nullptr;  // fds with waiters (io.cpp); created on the first fd wait
    DnsHub* dns = nullptr;  // this hub's resolvers (dns.cpp); created on the first one

private:
    void run_callbacks();
    void poll(int flags);
    static void on_async(struct ev_loop*, ev_async*, int);
    ev_async async_{};
    std::mutex remote_mu_;
    std::vector<std::function<void()>> remote_;
    std::uint64_t index_ = 0;
};

HubImpl* create_hub(ThreadState* ts);
// fork() support. In the child, the forking thread's hub is reinitialised (ev_loop_fork, its
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
std::uint64_t monotonic_ns() noexcept;

// Report an exception that nothing will ever see otherwise (hub callback, greenlet body).
void report_exception(const char* where, std::exception_ptr e) noexcept;
std::string describe_exception(std::exception_ptr e);

}  // namespace cogent::detail
