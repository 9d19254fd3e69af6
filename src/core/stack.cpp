// Greenlet stacks: slab allocation, guard regions, pooling, and the stack-overflow report.
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "core/thread_state.hpp"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102  // Linux 6.13; glibc 2.36 headers lack the name
#endif

namespace cogent::detail {

std::size_t page_size() noexcept {
    static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return p;
}

namespace {
// 1 = MADV_GUARD_INSTALL works, 0 = unknown yet, -1 = fall back to mprotect.
std::atomic<int> g_guard_mode{0};
constexpr std::size_t kSlabBytes = 16u << 20;  // virtual bytes per slab (stacks are not resident)

void install_guard(char* guard) {
    int mode = g_guard_mode.load(std::memory_order_relaxed);
    if (mode == 0 && config().stack_guard_mprotect) {  // parsed already: ThreadState read it
        mode = -1;
        g_guard_mode.store(-1, std::memory_order_relaxed);
    }
    if (mode >= 0) {
        if (madvise(guard, StackPool::kGuard, MADV_GUARD_INSTALL) == 0) {
            g_guard_mode.store(1, std::memory_order_relaxed);
            return;
        }
        // EINVAL: kernel older than 6.13. Fall back once and for all.
        g_guard_mode.store(-1, std::memory_order_relaxed);
    }
    if (mprotect(guard, StackPool::kGuard, PROT_NONE) != 0) throw std::bad_alloc();
}
}  // namespace

bool StackPool::guard_via_madvise() noexcept { return g_guard_mode.load() == 1; }

void* StackPool::acquire(std::size_t size) {
    SizeClass& sc = size_class(size);
    if (!sc.free.empty()) {
        void* lo = sc.free.back();
        sc.free.pop_back();
        if (sc.cold > sc.free.size()) sc.cold = sc.free.size();
        return lo;
    }
    const std::size_t stride = size + kGuard;
    std::size_t n = kSlabBytes / stride;
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    const std::size_t bytes = n * stride;
    // Everything that can fail comes first, so a failure (std::bad_alloc) leaves the pool as
    // it was: the lists' room, then the mapping, then its guards.
    if (slabs_.size() == slabs_.capacity()) slabs_.reserve(2 * slabs_.size() + 8);
    if (sc.free.capacity() < n - 1) sc.free.reserve(n - 1);  // empty here
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    char* base = static_cast<char*>(mem);
    // Guards first: the whole slab is prepared before any stack of it is handed out.
    try {
        for (std::size_t i = 0; i < n; ++i) install_guard(base + i * stride);
    } catch (...) {
        munmap(mem, bytes);
        throw;
    }
    slabs_.emplace_back(mem, bytes);  // no throw: reserved
    // Never touched yet, so not resident: they go below the cold mark. Pushed so that later
    // pops go upwards in memory.
    sc.free.insert(sc.free.begin(), n - 1, nullptr);
    for (std::size_t i = 1; i < n; ++i) sc.free[n - 1 - i] = base + i * stride + kGuard;
    sc.cold += n - 1;
    return base + kGuard;
}

void StackPool::release(void* lo, std::size_t size) noexcept {
    SizeClass& sc = size_class(size);
    try {
        sc.free.push_back(lo);
    } catch (...) {
        return;  // no memory for the free list: the stack is simply not reused
    }
    if (sc.free.size() - sc.cold > 2 * kHot) trim(sc, size);
}

// Give back the pages of all but the kHot warmest free stacks.
void StackPool::trim(SizeClass& sc, std::size_t size) noexcept {
    const std::size_t end = sc.free.size() - kHot;
    std::vector<char*> batch;
    try {
        batch.reserve(end - sc.cold);
        for (std::size_t i = sc.cold; i < end; ++i) batch.push_back(static_cast<char*>(sc.free[i]));
    } catch (...) {
        return;
    }
    std::sort(batch.begin(), batch.end());
    const std::size_t stride = size + kGuard;
    for (std::size_t i = 0; i < batch.size();) {
        std::size_t j = i + 1;
        while (j < batch.size() && batch[j] == batch[j - 1] + stride) ++j;
        // One call for the run; the guards in between keep their markers (MADV_DONTNEED
        // preserves MADV_GUARD_INSTALL guards, and PROT_NONE ones are unaffected).
        madvise(batch[i], std::size_t(batch[j - 1] - batch[i]) + size, MADV_DONTNEED);
        i = j;
    }
    sc.cold = end;
}

StackPool::~StackPool() {
    for (auto& [mem, bytes] : slabs_) munmap(mem, bytes);
}

// ---- stack overflow: a SIGSEGV in the guard below the current greenlet's stack ----

namespace {
constexpr std::size_t kAltStackBytes = 64 * 1024;
struct sigaction g_prev_segv;
std::atomic<bool> g_handler_installed{false};

void write_str(const char* s) {
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

// The interrupted stack pointer, or 0 where we do not know how to read it.
std::uintptr_t fault_sp(void* uctx) noexcept {
    auto* uc = static_cast<ucontext_t*>(uctx);
#if defined(__x86_64__)
    return static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
    return static_cast<std::uintptr_t>(uc->uc_mcontext.sp);
#else
    (void)uc;
    return 0;
#endif
}

// A frame larger than the guard (built without -fstack-clash-protection) moves the stack
// pointer past the guard before it writes anything: the fault then comes with the stack pointer
// below the greenlet's stack, its address anywhere. So far below and no further is ours.
constexpr std::uintptr_t kJumpReach = std::uintptr_t(256) << 20;

void segv_handler(int sig, siginfo_t* info, void* uctx) {
    ThreadState* ts = tls_state;
    GreenletImpl* g = ts ? ts->current : nullptr;
    if (g && !g->is_main() && g->stack_lo) {
        const auto lo = reinterpret_cast<std::uintptr_t>(g->stack_lo);
        const std::uintptr_t sp = fault_sp(uctx);
        // A fault inside a handler already running on the signal stack is not an overflow.
        bool on_altstack = false;
        stack_t ss{};
        if (sigaltstack(nullptr, &ss) == 0 && !(ss.ss_flags & SS_DISABLE)) {
            const auto alt = reinterpret_cast<std::uintptr_t>(ss.ss_sp);
            on_altstack = sp >= alt && sp < alt + ss.ss_size;
        }
        const bool sp_below = sp && !on_altstack && sp < lo && lo - sp <= kJumpReach;
        if (StackPool::in_guard(info->si_addr, g->stack_lo) || sp_below) {
            char name[128];
            g->describe(name, sizeof name);
            char num[32];
            snprintf(num, sizeof num, "%zu", g->stack_size);
            write_str("cogent: stack overflow in greenlet ");
            write_str(name);
            write_str(" (stack size ");
            write_str(num);
            write_str(" bytes; raise it with COGENT_STACK_SIZE or the spawn option stack_size)\n");
            if (sp_below && lo - sp > StackPool::kGuard) {
                snprintf(num, sizeof num, "%zu", std::size_t(lo - sp));
                write_str("cogent: a frame jumped the stack guard (stack pointer ");
                write_str(num);
                write_str(
                    " bytes below the stack): it may have written into other memory; build "
                    "with -fstack-clash-protection so that large frames fault in the "
                    "guard\n");
            }
            signal(SIGSEGV, SIG_DFL);  // returning re-faults and the process dies with SIGSEGV
            return;
        }
    }
    // Not ours: hand over to whoever was installed before, or die the default way.
    if (g_prev_segv.sa_flags & SA_SIGINFO) {
        if (g_prev_segv.sa_sigaction) {
            g_prev_segv.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN) {
        g_prev_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}
}  // namespace

void install_overflow_handler(ThreadState* ts) {
    // The handler runs on an alternate stack: the faulting one has no room left.
    const std::size_t alt = kAltStackBytes;
    stack_t cur{};
    if (sigaltstack(nullptr, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        void* mem = mmap(nullptr, alt, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem != MAP_FAILED) {
            stack_t ss{};
            ss.ss_sp = mem;
            ss.ss_size = alt;
            if (sigaltstack(&ss, nullptr) == 0)
                ts->altstack = mem;
            else
                munmap(mem, alt);
        }
    }
    bool expected = false;
    if (g_handler_installed.compare_exchange_strong(expected, true)) {
        struct sigaction sa {};
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &g_prev_segv);
    }
}

}  // namespace cogent::detail
