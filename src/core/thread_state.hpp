// Per-thread runtime state (the running greenlet, stacks, live greenlets) and error reporting.
// Internal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "cogent/detail/core.hpp"
#include "core/config.hpp"
#include "core/stack_pool.hpp"

#define COGENT_TLS_IE __attribute__((tls_model("initial-exec")))

namespace cogent {
enum class ErrorKind;
}

namespace cogent::detail {

class MainGreenlet;

struct ThreadState : ThreadCore {
    ThreadState();
    ~ThreadState();  // thread_state.cpp; the hub's part through HubOps::teardown
    MainGreenlet* main = nullptr;
    HubImpl* hub = nullptr;
    GreenletImpl* hub_greenlet =
        nullptr;  // hub->greenlet, for core's checks (set by the hub layer)
    StackPool stacks;
    List<GreenletImpl> live;  // started, not yet dead (main and hub excluded)
    std::uint64_t next_id = 1;
    void* tracer = nullptr;  // the TraceFunction of settrace (cogent/util.hpp), owned
    bool in_trace = false;   // calling it: switches it makes are not traced
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

std::uint64_t monotonic_ns() noexcept;

// Core cannot call the hub (a higher layer): the hub layer hands it these when it makes its
// first hub, before any ThreadState has one.
struct HubOps {
    // ~ThreadState of a thread with a hub, from its main greenlet: let the hub finish its
    // callback, unwind the greenlets left, stop the hub, delete it and null ts->hub.
    void (*teardown)(ThreadState* ts);
    // In a forked child, for the forking thread's hub, before the fork-child hooks run.
    void (*after_fork)(HubImpl* hub) noexcept;
};
// Install ops (static storage) once per process; later calls do nothing. The first also
// installs the fork-child handler (pthread_atfork) that runs ops->after_fork and the hooks.
void set_hub_ops(const HubOps* ops);
// fork() support. In the child, the forking thread's hub is reinitialised (HubOps::after_fork)
// and then each registered hook runs, in registration order, on the child's only thread (the
// thread pool forgets its workers, the resolver rebuilds its channel). Registration is for the
// runtime's own subsystems; at most 16 hooks. The hooks run only once a hub has been made.
void add_fork_child_hook(void (*hook)());

// Report an exception that nothing will ever see otherwise (hub callback, greenlet body):
// through the handler of set_error_handler (cogent/util.hpp), by default a line on stderr.
// report_exception: "cogent: uncaught exception in WHERE: TYPE: WHAT", kind callback.
void report_exception(const char* where, std::exception_ptr e) noexcept;
// The general form: `message` is the whole line (without newline).
void report_error(ErrorKind kind, std::string_view where, std::exception_ptr e,
                  std::string_view message) noexcept;
std::string describe_exception(std::exception_ptr e);

}  // namespace cogent::detail
