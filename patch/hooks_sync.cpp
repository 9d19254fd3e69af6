// The sync family of the monkey patch: pthread mutexes, conditions, rwlocks, barriers, spin
// locks, once, unnamed semaphores, sched_yield and private futexes (syscall(SYS_futex): how
// std::atomic::wait, std::counting_semaphore, std::latch, std::barrier and C++ static-local
// guards block) become cooperative for greenlets, and stay correct for real threads.
//
// One implementation for every caller of an object: its state lives in the object's own bytes
// (all-zero bytes are an unlocked default object, so the static initialisers work), and a
// caller that must wait parks in the runtime's parking lot (src/wait/lot.hpp) keyed by the
// object's address: a greenlet parks through its hub, a thread without a hub (the thread pool's
// workers, a thread of its own) sleeps in the kernel, and each wakes the other. The layouts
// keep glibc's offsets where glibc's own initialisers or attribute encoding put something (a
// mutex's kind, a condition's clock and process-shared bits, an rwlock's kind and shared flag,
// a barrier's shared flag, a semaphore's value and private flag): objects that are
// process-shared, robust or priority-protocol are made by libc's init and handed to libc on
// every call, unchanged.
//
// Errors are libc's: EDEADLK (error-checking relock, a write lock's holder asking again),
// EPERM (unlocking what the caller does not hold: error-checking and recursive mutexes, rwlocks),
// EBUSY (trylock; destroying a locked mutex, a condition or barrier with waiters), ETIMEDOUT,
// EINVAL (a bad timespec once the call would wait, an unknown clock, a destroyed mutex),
// EAGAIN (a recursive mutex's count, an rwlock's readers, at their maximum).
//
// Ownership: a greenlet is a thread here. A recursive mutex held by one greenlet is not
// re-entered by another greenlet of the same OS thread: it waits, as another thread would.
//
// A kill (or any exception thrown into a waiting greenlet) follows POSIX cancellation: the
// functions that are cancellation points (pthread_cond_*wait, sem_*wait, pthread_once) let it
// through, pthread_cond_wait with the mutex held again (as a cancelled thread has it); the others,
// which glibc declares nothrow (mutexes, rwlocks, barriers, spin locks, sched_yield, syscall),
// finish their wait and the exception is thrown into the greenlet at its next suspension point.
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>  // std::__once_callable, std::__once_call

#include "shim.hpp"

using namespace cogent::patch;
namespace lot = cogent::detail::lot;

namespace {

inline bool sync_on() noexcept { return patched_families & Family::sync; }

bool valid_ts(const timespec* t) noexcept { return t->tv_nsec >= 0 && t->tv_nsec < 1'000'000'000; }

lot::Deadline deadline_at(clockid_t clock, const timespec* at) noexcept {
    lot::Deadline d;
    if (!at) return d;
    d.forever = false;
    d.clock = clock;
    d.at = *at;
    if (d.at.tv_sec < 0) d.at = timespec{0, 0};  // long passed: time out at once
    return d;
}

// ---- mutexes ----------------------------------------------------------------------------------
// glibc's layout (x86-64): int __lock, unsigned __count, int __owner, unsigned __nusers, int
// __kind, ... Here: the lock word where glibc has it (0 free, 1 locked, 2 locked and maybe
// waited for: Drepper's "mutex3"), the recursion count, a 64-bit owner over __owner and
// __nusers (a greenlet or a thread token; kept for recursive and error-checking mutexes), and
// __kind as glibc encodes it.
struct MutexRep {
    std::atomic<std::uint32_t> word;
    std::uint32_t count;
    std::atomic<std::uintptr_t> owner;
    std::atomic<int> kind;
};
static_assert(sizeof(MutexRep) <= sizeof(pthread_mutex_t) && offsetof(MutexRep, kind) == 16);

constexpr int kKindTypeMask = 3;  // PTHREAD_MUTEX_{NORMAL,RECURSIVE,ERRORCHECK,ADAPTIVE}_NP
constexpr int kKindLibc = 16 | 32 | 64 | 128;  // robust, PI, PP, process-shared: libc's
constexpr int kKindDestroyed = -1;             // what glibc's destroy stores

MutexRep* rep(pthread_mutex_t* m) noexcept { return reinterpret_cast<MutexRep*>(m); }

bool mutex_is_libc(pthread_mutex_t* m) noexcept {
    const int k = rep(m)->kind.load(std::memory_order_relaxed);
    return !sync_on() || (k != kKindDestroyed && (k & kKindLibc));
}

bool word_validate_contended(void* ctx) {
    return static_cast<MutexRep*>(ctx)->word.load(std::memory_order_relaxed) == 2;
}

// What an unlock hands the first waiter with the lock itself (the lot's token).
constexpr std::uintptr_t kHandoff = 1;

// Take the lock word: 0, or ETIMEDOUT / EINVAL (a bad timespec, once it would wait).
// Fair: while anyone waits, an unlock hands the lock to the first waiter (the word never goes
// through 0), so no newcomer can take it first. Greenlets need that: one that unlocks, yields
// and locks again would otherwise never let a waiter of its own thread in (no preemption).
[[gnu::noinline]] int word_lock(MutexRep* r, clockid_t clock, const timespec* abstime,
                                const char* what) {
    std::uint32_t c = 0;
    if (r->word.compare_exchange_strong(c, 1, std::memory_order_acquire)) [[likely]]
        return 0;
    if (abstime && !valid_ts(abstime)) return EINVAL;
    if (!lot::caller_is_green()) {  // a thread: spin a little before sleeping
        for (int i = 0; i < 100 && c == 1; ++i) {
            cpu_relax();
            c = r->word.load(std::memory_order_relaxed);
            if (c == 0 && r->word.compare_exchange_strong(c, 1, std::memory_order_acquire))
                return 0;
        }
    }
    const lot::Deadline d = deadline_at(clock, abstime);
    lot::Hooks h;
    h.validate = &word_validate_contended;
    h.ctx = r;
    h.defer_exceptions = true;  // pthread_mutex_lock is nothrow, and no cancellation point
    for (;;) {
        c = r->word.load(std::memory_order_relaxed);
        if (c == 0) {
            if (r->word.compare_exchange_weak(c, 1, std::memory_order_acquire)) return 0;
            continue;
        }
        if (c == 1 && !r->word.compare_exchange_weak(c, 2, std::memory_order_relaxed)) continue;
        lot::Outcome out;
        const lot::Result res = lot::park(r, 1, h, d, what, &out);
        if (res == lot::unparked && out.token == kHandoff) {
            std::atomic_thread_fence(std::memory_order_acquire);
            return 0;  // handed over: ours
        }
        if (res == lot::timed_out) return ETIMEDOUT;
    }
}

std::uintptr_t word_handoff(void* ctx, unsigned count, bool have_more) {
    auto* r = static_cast<MutexRep*>(ctx);
    if (count == 0) {  // the waiters left (timed out) meanwhile
        r->word.store(0, std::memory_order_release);
        return 0;
    }
    r->word.store(have_more ? 2 : 1, std::memory_order_release);
    return kHandoff;
}

[[gnu::noinline]] void word_unlock_contended(MutexRep* r) {
    std::atomic_thread_fence(std::memory_order_release);
    lot::unpark(r, 1, ~0u, &word_handoff, r);
}

void word_unlock(MutexRep* r) {
    std::uint32_t c = 1;
    if (r->word.compare_exchange_strong(c, 0, std::memory_order_release)) [[likely]]
        return;
    word_unlock_contended(r);
}

int mutex_lock(pthread_mutex_t* m, clockid_t clock, const timespec* abstime, bool try_only,
               const char* what) {
    MutexRep* r = rep(m);
    const int kind = r->kind.load(std::memory_order_relaxed);
    if (kind == kKindDestroyed) return EINVAL;
    const int type = kind & kKindTypeMask;
    if (type == PTHREAD_MUTEX_RECURSIVE || type == PTHREAD_MUTEX_ERRORCHECK) {
        const std::uintptr_t me = lot::self_token();
        if (r->owner.load(std::memory_order_relaxed) == me) {
            if (type == PTHREAD_MUTEX_ERRORCHECK) return try_only ? EBUSY : EDEADLK;
            if (r->count == UINT32_MAX) return EAGAIN;
            ++r->count;
            return 0;
        }
        int e = 0;
        if (try_only) {
            std::uint32_t c = 0;
            if (!r->word.compare_exchange_strong(c, 1, std::memory_order_acquire)) return EBUSY;
        } else if ((e = word_lock(r, clock, abstime, what)) != 0) {
            return e;
        }
        r->owner.store(me, std::memory_order_relaxed);
        r->count = 1;
        return 0;
    }
    if (try_only) {
        std::uint32_t c = 0;
        return r->word.compare_exchange_strong(c, 1, std::memory_order_acquire) ? 0 : EBUSY;
    }
    return word_lock(r, clock, abstime, what);
}

int mutex_unlock(pthread_mutex_t* m) {
    MutexRep* r = rep(m);
    const int kind = r->kind.load(std::memory_order_relaxed);
    if (kind == kKindDestroyed) return EINVAL;
    const int type = kind & kKindTypeMask;
    if (type == PTHREAD_MUTEX_RECURSIVE || type == PTHREAD_MUTEX_ERRORCHECK) {
        if (r->owner.load(std::memory_order_relaxed) != lot::self_token()) return EPERM;
        if (--r->count != 0) return 0;
        r->owner.store(0, std::memory_order_relaxed);
    }
    word_unlock(r);
    return 0;
}

// Would unlocking m now fail (EPERM)? For pthread_cond_wait, which must not start waiting then.
int mutex_check_owner(pthread_mutex_t* m) noexcept {
    MutexRep* r = rep(m);
    const int type = r->kind.load(std::memory_order_relaxed) & kKindTypeMask;
    if (type != PTHREAD_MUTEX_RECURSIVE && type != PTHREAD_MUTEX_ERRORCHECK) return 0;
    return r->owner.load(std::memory_order_relaxed) == lot::self_token() ? 0 : EPERM;
}

// Through libc for its kinds of mutex, here for ours: what pthread_cond_wait unlocks and
// re-takes.
int any_mutex_unlock(pthread_mutex_t* m) {
    return mutex_is_libc(m) ? libc().mutex_unlock(m) : mutex_unlock(m);
}
int any_mutex_lock(pthread_mutex_t* m) {
    return mutex_is_libc(m) ? libc().mutex_lock(m)
                            : mutex_lock(m, CLOCK_REALTIME, nullptr, false, "pthread_cond_wait");
}

// ---- conditions --------------------------------------------------------------------------------
// glibc keeps the clock and process-shared bits in __wrefs (offset 36: bit 0 shared, bit 1
// CLOCK_MONOTONIC); here also a count of waiters (kept under the lot's lock).
struct CondRep {
    std::uint32_t pad0;
    std::atomic<std::uint32_t> waiters;
    std::uint32_t pad[7];
    std::atomic<std::uint32_t> flags;
};
static_assert(sizeof(CondRep) <= sizeof(pthread_cond_t) && offsetof(CondRep, flags) == 36);
constexpr std::uint32_t kCondShared = 1, kCondMonotonic = 2;

CondRep* rep(pthread_cond_t* c) noexcept { return reinterpret_cast<CondRep*>(c); }
bool cond_is_libc(pthread_cond_t* c) noexcept {
    return !sync_on() || (rep(c)->flags.load(std::memory_order_relaxed) & kCondShared);
}

struct CondWait {
    CondRep* c;
    pthread_mutex_t* m;
};

int cond_wait(pthread_cond_t* cv, pthread_mutex_t* m, clockid_t clock, const timespec* abstime) {
    if (int e = mutex_is_libc(m) ? 0 : mutex_check_owner(m)) return e;
    CondWait w{rep(cv), m};
    lot::Hooks h;
    h.ctx = &w;
    h.validate = [](void* ctx) {
        static_cast<CondWait*>(ctx)->c->waiters.fetch_add(1, std::memory_order_relaxed);
        return true;
    };
    h.before_sleep = [](void* ctx) { any_mutex_unlock(static_cast<CondWait*>(ctx)->m); };
    h.cancelled = [](void* ctx, bool) {
        static_cast<CondWait*>(ctx)->c->waiters.fetch_sub(1, std::memory_order_relaxed);
    };
    lot::Result res;
    try {
        res = lot::park(cv, 1, h, deadline_at(clock, abstime), "pthread_cond_wait", nullptr);
    } catch (...) {
        // As a cancelled thread: the mutex is held again when the exception leaves (the
        // caller's unwinding, a std::unique_lock's destructor, unlocks it).
        try {
            any_mutex_lock(m);
        } catch (...) {
        }
        throw;
    }
    any_mutex_lock(m);
    return res == lot::timed_out ? ETIMEDOUT : 0;
}

std::uintptr_t cond_unparked(void* ctx, unsigned count, bool) {
    static_cast<CondRep*>(ctx)->waiters.fetch_sub(count, std::memory_order_relaxed);
    return 0;
}

int cond_wake(pthread_cond_t* cv, unsigned n) {
    CondRep* c = rep(cv);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (c->waiters.load(std::memory_order_relaxed) == 0) return 0;
    lot::unpark(cv, n, ~0u, &cond_unparked, c);
    return 0;
}

// ---- rwlocks
// ------------------------------------------------------------------------------------- glibc:
// __shared at offset 28, __flags (the kind) at 48. Here: a state word (readers in the low 30 bits,
// a parked bit, a writer bit), the number of writers waiting, the writer's token.
struct RwRep {
    std::atomic<std::uint32_t> state;
    std::atomic<std::uint32_t> writers_waiting;
    std::atomic<std::uintptr_t> writer;
    std::uint32_t pad[3];
    int shared;
    std::uint32_t pad2[4];
    std::uint32_t flags;
};
static_assert(sizeof(RwRep) <= sizeof(pthread_rwlock_t) && offsetof(RwRep, shared) == 28 &&
              offsetof(RwRep, flags) == 48);
constexpr std::uint32_t kRwWriter = 1u << 31, kRwParked = 1u << 30, kRwReaders = kRwParked - 1;

RwRep* rep(pthread_rwlock_t* l) noexcept { return reinterpret_cast<RwRep*>(l); }
bool rw_is_libc(pthread_rwlock_t* l) noexcept { return !sync_on() || rep(l)->shared != 0; }

struct RwWait {
    RwRep* r;
    bool writer;
};
bool rw_blocked(RwRep* r, std::uint32_t s, bool writer) noexcept {
    if (writer) return (s & (kRwWriter | kRwReaders)) != 0;
    if (s & kRwWriter) return true;
    return r->flags == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP &&
           r->writers_waiting.load(std::memory_order_relaxed) != 0;
}

int rw_lock(pthread_rwlock_t* l, bool writer, clockid_t clock, const timespec* abstime,
            bool try_only) {
    RwRep* r = rep(l);
    const std::uintptr_t me = lot::self_token();
    if (r->writer.load(std::memory_order_relaxed) == me) return try_only ? EBUSY : EDEADLK;
    bool checked_time = false;
    for (;;) {
        std::uint32_t s = r->state.load(std::memory_order_relaxed);
        if (!rw_blocked(r, s, writer)) {
            if (!writer && (s & kRwReaders) == kRwReaders) return EAGAIN;
            const std::uint32_t next = writer ? (s | kRwWriter) : s + 1;
            if (r->state.compare_exchange_weak(s, next, std::memory_order_acquire)) {
                if (writer) r->writer.store(me, std::memory_order_relaxed);
                return 0;
            }
            continue;
        }
        if (try_only) return EBUSY;
        if (!checked_time) {
            if (abstime && !valid_ts(abstime)) return EINVAL;
            checked_time = true;
        }
        if (!(s & kRwParked) &&
            !r->state.compare_exchange_weak(s, s | kRwParked, std::memory_order_relaxed))
            continue;
        RwWait w{r, writer};
        lot::Hooks h;
        h.ctx = &w;
        h.validate = [](void* ctx) {
            auto* w = static_cast<RwWait*>(ctx);
            const std::uint32_t s = w->r->state.load(std::memory_order_relaxed);
            return (s & kRwParked) && rw_blocked(w->r, s, w->writer);
        };
        h.defer_exceptions = true;  // nothrow in libc, no cancellation point
        if (writer) r->writers_waiting.fetch_add(1, std::memory_order_relaxed);
        const lot::Result res =
            lot::park(r, writer ? 2 : 1, h, deadline_at(clock, abstime),
                      writer ? "pthread_rwlock_wrlock" : "pthread_rwlock_rdlock", nullptr);
        if (writer && r->writers_waiting.fetch_sub(1, std::memory_order_relaxed) == 1 &&
            r->flags == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP)
            lot::unpark(r, UINT_MAX, 1, nullptr, nullptr);  // readers held back by us
        if (res == lot::timed_out) return ETIMEDOUT;
    }
}

int rw_unlock(pthread_rwlock_t* l) {
    RwRep* r = rep(l);
    std::uint32_t s = r->state.load(std::memory_order_relaxed);
    if (s & kRwWriter) {
        if (r->writer.load(std::memory_order_relaxed) != lot::self_token()) return EPERM;
        r->writer.store(0, std::memory_order_relaxed);
        if (r->state.exchange(0, std::memory_order_release) & kRwParked)
            lot::unpark(r, UINT_MAX, ~0u, nullptr, nullptr);
        return 0;
    }
    for (;;) {
        if ((s & kRwReaders) == 0) return EPERM;  // not locked
        if (r->state.compare_exchange_weak(s, s - 1, std::memory_order_release)) break;
    }
    if ((s & kRwReaders) == 1 && (s & kRwParked)) {
        std::uint32_t p = kRwParked;
        if (r->state.compare_exchange_strong(p, 0, std::memory_order_relaxed))
            lot::unpark(r, UINT_MAX, ~0u, nullptr, nullptr);
    }
    return 0;
}

// ---- barriers ----------------------------------------------------------------------------------
// glibc: in, current_round, count, shared (offset 12), out.
struct BarrierRep {
    std::uint32_t arrived;
    std::atomic<std::uint32_t> round;
    std::uint32_t count;
    int shared;
};
static_assert(sizeof(BarrierRep) <= sizeof(pthread_barrier_t) &&
              offsetof(BarrierRep, shared) == 12);
BarrierRep* rep(pthread_barrier_t* b) noexcept { return reinterpret_cast<BarrierRep*>(b); }
bool barrier_is_libc(pthread_barrier_t* b) noexcept { return !sync_on() || rep(b)->shared != 0; }

struct BarrierWait {
    BarrierRep* b;
    bool arrive;
    bool serial = false;
    std::uint32_t round = 0;
};

int barrier_wait(pthread_barrier_t* bar) {
    BarrierRep* b = rep(bar);
    BarrierWait w{b, true};
    lot::Hooks h;
    h.ctx = &w;
    h.defer_exceptions = true;  // nothrow in libc, no cancellation point
    // Arrivals are counted under the lot's lock of the barrier's bucket: one at a time.
    h.validate = [](void* ctx) {
        auto* w = static_cast<BarrierWait*>(ctx);
        if (w->arrive) {
            w->arrive = false;
            w->round = w->b->round.load(std::memory_order_relaxed);
            if (++w->b->arrived >= w->b->count) {
                w->b->arrived = 0;
                w->b->round.store(w->round + 1, std::memory_order_release);
                w->serial = true;
                return false;
            }
        }
        return w->b->round.load(std::memory_order_acquire) == w->round;
    };
    while (lot::park(bar, 1, h, lot::Deadline{}, "pthread_barrier_wait", nullptr) != lot::invalid) {
    }
    if (!w.serial) return 0;
    lot::unpark(bar, UINT_MAX, ~0u, nullptr, nullptr);
    return PTHREAD_BARRIER_SERIAL_THREAD;
}

// ---- semaphores
// ---------------------------------------------------------------------------------- glibc's
// (64-bit): data = value (low 32 bits) | waiters (high 32 bits); private: 0 for a process-private
// semaphore, 128 (FUTEX_SHARED) otherwise. sem_init and sem_destroy stay libc's.
struct SemRep {
    std::atomic<std::uint64_t> data;
    int priv;
};
static_assert(sizeof(SemRep) <= sizeof(sem_t));
constexpr std::uint64_t kSemValue = 0xffffffffull, kSemWaiter = 1ull << 32;
SemRep* rep(sem_t* s) noexcept { return reinterpret_cast<SemRep*>(s); }
bool sem_is_libc(sem_t* s) noexcept { return !sync_on() || rep(s)->priv != 0; }

bool sem_try(SemRep* s) noexcept {
    std::uint64_t d = s->data.load(std::memory_order_relaxed);
    while (d & kSemValue)
        if (s->data.compare_exchange_weak(d, d - 1, std::memory_order_acquire)) return true;
    return false;
}

int sem_wait_impl(sem_t* sem, clockid_t clock, const timespec* abstime) {
    SemRep* s = rep(sem);
    lot::Hooks h;
    h.ctx = s;
    h.validate = [](void* ctx) {  // count us as a waiter unless a post came first
        auto* s = static_cast<SemRep*>(ctx);
        std::uint64_t d = s->data.load(std::memory_order_relaxed);
        for (;;) {
            if (d & kSemValue) return false;
            if (s->data.compare_exchange_weak(d, d + kSemWaiter, std::memory_order_relaxed))
                return true;
        }
    };
    h.cancelled = [](void* ctx, bool) {
        static_cast<SemRep*>(ctx)->data.fetch_sub(kSemWaiter, std::memory_order_relaxed);
    };
    const lot::Deadline d = deadline_at(clock, abstime);
    for (;;) {
        if (sem_try(s)) return 0;
        lot::Outcome out;
        lot::Result res;
        try {
            res = lot::park(sem, 1, h, d, "sem_wait", &out);
        } catch (...) {
            // A cancellation point: the exception goes through, and a unit handed to us
            // meanwhile goes back.
            if (out.result == lot::unparked && out.token == kHandoff) sem_post(sem);
            throw;
        }
        if (res == lot::unparked && out.token == kHandoff) return 0;
        if (res == lot::timed_out) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
}

// sem_post with waiters: the unit goes straight to the first of them (fair, as the mutexes),
// or into the value if they all left meanwhile. Under the lot's lock, where waiters count
// themselves: the count is exact there.
std::uintptr_t sem_handoff(void* ctx, unsigned count, bool) {
    auto* s = static_cast<SemRep*>(ctx);
    if (count == 0) {
        s->data.fetch_add(1, std::memory_order_release);
        return 0;
    }
    s->data.fetch_sub(count * kSemWaiter, std::memory_order_release);
    return kHandoff;
}

// ---- once --------------------------------------------------------------------------------------
// glibc's values: 0 not run, bit 0 running, bit 1 done (the fork generation above them is
// glibc's; not kept here).
bool once_running(void* ctx) {
    return static_cast<std::atomic<int>*>(ctx)->load(std::memory_order_acquire) == 1;
}

// ---- futexes
// -------------------------------------------------------------------------------------
bool futex_same(void* ctx) {
    auto* p = static_cast<std::pair<const std::atomic<std::uint32_t>*, std::uint32_t>*>(ctx);
    return p->first->load(std::memory_order_seq_cst) == p->second;
}

// FUTEX_WAIT(_BITSET)(_PRIVATE) of a greenlet: 0, or -1 with errno.
long futex_wait_green(std::uint32_t* uaddr, int op, std::uint32_t val, const timespec* t,
                      std::uint32_t bitset) {
    const int cmd = op & FUTEX_CMD_MASK;
    if (cmd == FUTEX_WAIT_BITSET && bitset == 0) {
        errno = EINVAL;
        return -1;
    }
    lot::Deadline d;
    if (t) {
        if (!valid_ts(t) || t->tv_sec < 0) {
            errno = EINVAL;
            return -1;
        }
        if (cmd == FUTEX_WAIT) {  // relative, on CLOCK_MONOTONIC
            timespec now{};
            clock_gettime(CLOCK_MONOTONIC, &now);
            d.forever = false;
            d.clock = CLOCK_MONOTONIC;
            d.at.tv_sec = now.tv_sec + t->tv_sec;
            d.at.tv_nsec = now.tv_nsec + t->tv_nsec;
            if (d.at.tv_nsec >= 1'000'000'000) {
                d.at.tv_nsec -= 1'000'000'000;
                ++d.at.tv_sec;
            }
        } else {
            d = deadline_at((op & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC, t);
        }
    }
    std::pair<const std::atomic<std::uint32_t>*, std::uint32_t> ctx{
        reinterpret_cast<const std::atomic<std::uint32_t>*>(uaddr), val};
    lot::Hooks h;
    h.validate = &futex_same;
    h.ctx = &ctx;
    h.defer_exceptions = true;  // syscall() is nothrow
    const int saved = errno;
    const std::uint32_t tag = cmd == FUTEX_WAIT ? FUTEX_BITSET_MATCH_ANY : bitset;
    // A shared futex may be woken by another process, straight in the kernel: re-check the
    // word every 10 ms (a wake from this process, through this hook, comes at once).
    const bool shared = !(op & FUTEX_PRIVATE_FLAG);
    for (;;) {
        lot::Deadline step = d;
        if (shared) {
            timespec now{};
            clock_gettime(d.forever ? CLOCK_MONOTONIC : d.clock, &now);
            now.tv_nsec += 10'000'000;
            if (now.tv_nsec >= 1'000'000'000) {
                now.tv_nsec -= 1'000'000'000;
                ++now.tv_sec;
            }
            if (d.forever || now.tv_sec < d.at.tv_sec ||
                (now.tv_sec == d.at.tv_sec && now.tv_nsec < d.at.tv_nsec)) {
                step.forever = false;
                step.clock = d.forever ? CLOCK_MONOTONIC : d.clock;
                step.at = now;
            }
        }
        switch (lot::park(uaddr, tag, h, step, "futex", nullptr)) {
            case lot::unparked:
                errno = saved;
                return 0;
            case lot::invalid:
                errno = EAGAIN;
                return -1;
            default:
                if (step.forever == d.forever && step.at.tv_sec == d.at.tv_sec &&
                    step.at.tv_nsec == d.at.tv_nsec) {
                    errno = ETIMEDOUT;
                    return -1;
                }
                // A step of a shared wait passed: go round (validate() sees a changed word).
        }
    }
}

// FUTEX_WAKE(_BITSET)(_PRIVATE) from anyone: the greenlets parked in the lot, then the kernel's.
long futex_wake_any(std::uint32_t* uaddr, int op, std::uint32_t val, std::uint32_t bitset) {
    const int cmd = op & FUTEX_CMD_MASK;
    if (cmd == FUTEX_WAKE_BITSET && bitset == 0) {
        errno = EINVAL;
        return -1;
    }
    const unsigned n = val > unsigned(INT_MAX) ? unsigned(INT_MAX) : val;
    unsigned woken = 0;
    if (lot::may_have_waiters(uaddr))
        woken = lot::unpark(uaddr, n, cmd == FUTEX_WAKE ? FUTEX_BITSET_MATCH_ANY : bitset, nullptr,
                            nullptr);
    if (woken >= n) return woken;
    const long r = cogent::detail::raw_syscall(SYS_futex, long(uaddr), op, long(n - woken), 0, 0,
                                               long(bitset));
    if (r < 0) {
        if (woken) return woken;
        errno = int(-r);
        return -1;
    }
    return woken + r;
}

// ---- stdio locks
// ---------------------------------------------------------------------------------- A FILE's lock
// belongs to an OS thread: every greenlet of the owner thread would pass it. For greenlets, a green
// owner (and count) per locked FILE is kept here, beside libc's lock, which is still taken
// (recursively, by the same thread) so that other threads wait as before.
struct FileOwner {
    FILE* f;
    std::uintptr_t owner;
    unsigned count;
};
constexpr int kFileOwners = 64;
FileOwner g_file_owners[kFileOwners];
SpinLock g_file_lock;

FileOwner* file_find(FILE* f) noexcept {
    for (auto& e : g_file_owners)
        if (e.f == f) return &e;
    return nullptr;
}

// Take f's green ownership for `me`: true; false when another greenlet holds it (or, with
// `wait`, after waiting for it: never false). The table full: no green ownership (libc's only).
bool file_take(FILE* f, std::uintptr_t me, bool wait) {
    for (;;) {
        {
            SpinGuard lk(g_file_lock);
            FileOwner* e = file_find(f);
            if (!e) {
                for (auto& x : g_file_owners)
                    if (!x.f) {
                        x = FileOwner{f, me, 1};
                        return true;
                    }
                return true;
            }
            if (e->owner == me) {
                ++e->count;
                return true;
            }
        }
        if (!wait) return false;
        lot::Hooks h;
        h.ctx = f;
        h.defer_exceptions = true;  // flockfile is nothrow
        h.validate = [](void* ctx) {
            SpinGuard lk(g_file_lock);
            FileOwner* e = file_find(static_cast<FILE*>(ctx));
            return e && e->owner != lot::self_token();
        };
        lot::park(f, 1, h, lot::Deadline{}, "flockfile", nullptr);
    }
}

void file_give(FILE* f, std::uintptr_t me) {
    bool freed = false;
    {
        SpinGuard lk(g_file_lock);
        FileOwner* e = file_find(f);
        if (!e || e->owner != me) return;
        if (--e->count == 0) {
            *e = FileOwner{};
            freed = true;
        }
    }
    if (freed && lot::may_have_waiters(f)) lot::unpark(f, UINT_MAX, ~0u, nullptr, nullptr);
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

// ---- mutexes ----
COGENT_HOOK int pthread_mutex_init(pthread_mutex_t* m, const pthread_mutexattr_t* attr) {
    if (!sync_on()) return libc().mutex_init(m, attr);
    int type = PTHREAD_MUTEX_DEFAULT, pshared = PTHREAD_PROCESS_PRIVATE;
    int robust = PTHREAD_MUTEX_STALLED, protocol = PTHREAD_PRIO_NONE;
    if (attr) {
        pthread_mutexattr_gettype(attr, &type);
        pthread_mutexattr_getpshared(attr, &pshared);
        pthread_mutexattr_getrobust(attr, &robust);
        pthread_mutexattr_getprotocol(attr, &protocol);
    }
    if (pshared != PTHREAD_PROCESS_PRIVATE || robust != PTHREAD_MUTEX_STALLED ||
        protocol != PTHREAD_PRIO_NONE)
        return libc().mutex_init(m, attr);
    std::memset(static_cast<void*>(m), 0, sizeof *m);
    rep(m)->kind.store(type, std::memory_order_relaxed);
    return 0;
}

COGENT_HOOK int pthread_mutex_destroy(pthread_mutex_t* m) {
    if (mutex_is_libc(m)) return libc().mutex_destroy(m);
    MutexRep* r = rep(m);
    if (r->kind.load(std::memory_order_relaxed) == kKindDestroyed) return EINVAL;
    if (r->word.load(std::memory_order_relaxed) != 0) return EBUSY;
    r->kind.store(kKindDestroyed, std::memory_order_relaxed);
    return 0;
}

// The common case first, inline: a normal (or adaptive) mutex of ours, free. Every program
// under the shim locks its mutexes here, so this path is kept to one load and one CAS beyond
// libc's.
inline bool plain_kind(int kind) noexcept {
    return kind == PTHREAD_MUTEX_NORMAL || kind == PTHREAD_MUTEX_ADAPTIVE_NP;
}

// A process with one thread needs no atomic read-modify-write (glibc skips the lock prefix
// then too): its greenlets never run at the same time, and the flag only ever goes from true
// to false, on this very thread, when it creates another.
inline bool single_threaded() noexcept { return __libc_single_threaded; }

COGENT_HOOK int pthread_mutex_lock(pthread_mutex_t* m) {
    MutexRep* r = rep(m);
    if (plain_kind(r->kind.load(std::memory_order_relaxed)) && sync_on()) [[likely]] {
        std::uint32_t c = 0;
        if (single_threaded()) {
            if (r->word.load(std::memory_order_relaxed) == 0) {
                r->word.store(1, std::memory_order_relaxed);
                return 0;
            }
        } else if (r->word.compare_exchange_strong(c, 1, std::memory_order_acquire)) [[likely]] {
            return 0;
        }
        return word_lock(r, CLOCK_REALTIME, nullptr, "pthread_mutex_lock");
    }
    if (mutex_is_libc(m)) return libc().mutex_lock(m);
    return mutex_lock(m, CLOCK_REALTIME, nullptr, false, "pthread_mutex_lock");
}

COGENT_HOOK int pthread_mutex_trylock(pthread_mutex_t* m) {
    if (mutex_is_libc(m)) return libc().mutex_trylock(m);
    return mutex_lock(m, CLOCK_REALTIME, nullptr, true, "pthread_mutex_trylock");
}

COGENT_HOOK int pthread_mutex_timedlock(pthread_mutex_t* m, const timespec* abstime) {
    if (mutex_is_libc(m)) return libc().mutex_timedlock(m, abstime);
    return mutex_lock(m, CLOCK_REALTIME, abstime, false, "pthread_mutex_timedlock");
}

COGENT_HOOK int pthread_mutex_clocklock(pthread_mutex_t* m, clockid_t clock,
                                        const timespec* abstime) {
    if (mutex_is_libc(m)) return libc().mutex_clocklock(m, clock, abstime);
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return mutex_lock(m, clock, abstime, false, "pthread_mutex_clocklock");
}

COGENT_HOOK int pthread_mutex_unlock(pthread_mutex_t* m) {
    MutexRep* r = rep(m);
    if (plain_kind(r->kind.load(std::memory_order_relaxed)) && sync_on()) [[likely]] {
        std::uint32_t c = 1;
        if (single_threaded()) {
            if (r->word.load(std::memory_order_relaxed) == 1)
                r->word.store(0, std::memory_order_relaxed);
            else
                word_unlock_contended(r);
        } else if (!r->word.compare_exchange_strong(c, 0, std::memory_order_release)) [[unlikely]] {
            word_unlock_contended(r);
        }
        return 0;
    }
    if (mutex_is_libc(m)) return libc().mutex_unlock(m);
    return mutex_unlock(m);
}

// ---- conditions ----
COGENT_HOOK int pthread_cond_init(pthread_cond_t* c, const pthread_condattr_t* attr) {
    if (!sync_on()) return libc().cond_init(c, attr);
    int pshared = PTHREAD_PROCESS_PRIVATE;
    clockid_t clock = CLOCK_REALTIME;
    if (attr) {
        pthread_condattr_getpshared(attr, &pshared);
        pthread_condattr_getclock(attr, &clock);
    }
    if (pshared != PTHREAD_PROCESS_PRIVATE) return libc().cond_init(c, attr);
    std::memset(static_cast<void*>(c), 0, sizeof *c);
    if (clock == CLOCK_MONOTONIC) rep(c)->flags.store(kCondMonotonic, std::memory_order_relaxed);
    return 0;
}

COGENT_HOOK int pthread_cond_destroy(pthread_cond_t* c) {
    if (cond_is_libc(c)) return libc().cond_destroy(c);
    return lot::count(c) ? EBUSY : 0;
}

COGENT_HOOK int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) {
    if (cond_is_libc(c)) return libc().cond_wait(c, m);
    return cond_wait(c, m, CLOCK_REALTIME, nullptr);
}

COGENT_HOOK int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m,
                                       const timespec* abstime) {
    if (cond_is_libc(c)) return libc().cond_timedwait(c, m, abstime);
    if (!valid_ts(abstime)) return EINVAL;
    const bool mono = rep(c)->flags.load(std::memory_order_relaxed) & kCondMonotonic;
    return cond_wait(c, m, mono ? CLOCK_MONOTONIC : CLOCK_REALTIME, abstime);
}

COGENT_HOOK int pthread_cond_clockwait(pthread_cond_t* c, pthread_mutex_t* m, clockid_t clock,
                                       const timespec* abstime) {
    if (cond_is_libc(c)) return libc().cond_clockwait(c, m, clock, abstime);
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    if (!valid_ts(abstime)) return EINVAL;
    return cond_wait(c, m, clock, abstime);
}

COGENT_HOOK int pthread_cond_signal(pthread_cond_t* c) {
    if (cond_is_libc(c)) return libc().cond_signal(c);
    return cond_wake(c, 1);
}

COGENT_HOOK int pthread_cond_broadcast(pthread_cond_t* c) {
    if (cond_is_libc(c)) return libc().cond_broadcast(c);
    return cond_wake(c, UINT_MAX);
}

// ---- rwlocks ----
COGENT_HOOK int pthread_rwlock_init(pthread_rwlock_t* l, const pthread_rwlockattr_t* attr) {
    if (!sync_on()) return libc().rwlock_init(l, attr);
    int pshared = PTHREAD_PROCESS_PRIVATE, kind = PTHREAD_RWLOCK_DEFAULT_NP;
    if (attr) {
        pthread_rwlockattr_getpshared(attr, &pshared);
        pthread_rwlockattr_getkind_np(attr, &kind);
    }
    if (pshared != PTHREAD_PROCESS_PRIVATE) return libc().rwlock_init(l, attr);
    std::memset(static_cast<void*>(l), 0, sizeof *l);
    rep(l)->flags = std::uint32_t(kind);
    return 0;
}

COGENT_HOOK int pthread_rwlock_destroy(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_destroy(l);
    return rep(l)->state.load(std::memory_order_relaxed) & (kRwWriter | kRwReaders) ? EBUSY : 0;
}

COGENT_HOOK int pthread_rwlock_rdlock(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_rdlock(l);
    return rw_lock(l, false, CLOCK_REALTIME, nullptr, false);
}
COGENT_HOOK int pthread_rwlock_tryrdlock(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_tryrdlock(l);
    return rw_lock(l, false, CLOCK_REALTIME, nullptr, true);
}
COGENT_HOOK int pthread_rwlock_timedrdlock(pthread_rwlock_t* l, const timespec* abstime) {
    if (rw_is_libc(l)) return libc().rwlock_timedrdlock(l, abstime);
    return rw_lock(l, false, CLOCK_REALTIME, abstime, false);
}
COGENT_HOOK int pthread_rwlock_clockrdlock(pthread_rwlock_t* l, clockid_t clock,
                                           const timespec* abstime) {
    if (rw_is_libc(l)) return libc().rwlock_clockrdlock(l, clock, abstime);
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return rw_lock(l, false, clock, abstime, false);
}
COGENT_HOOK int pthread_rwlock_wrlock(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_wrlock(l);
    return rw_lock(l, true, CLOCK_REALTIME, nullptr, false);
}
COGENT_HOOK int pthread_rwlock_trywrlock(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_trywrlock(l);
    return rw_lock(l, true, CLOCK_REALTIME, nullptr, true);
}
COGENT_HOOK int pthread_rwlock_timedwrlock(pthread_rwlock_t* l, const timespec* abstime) {
    if (rw_is_libc(l)) return libc().rwlock_timedwrlock(l, abstime);
    return rw_lock(l, true, CLOCK_REALTIME, abstime, false);
}
COGENT_HOOK int pthread_rwlock_clockwrlock(pthread_rwlock_t* l, clockid_t clock,
                                           const timespec* abstime) {
    if (rw_is_libc(l)) return libc().rwlock_clockwrlock(l, clock, abstime);
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return rw_lock(l, true, clock, abstime, false);
}
COGENT_HOOK int pthread_rwlock_unlock(pthread_rwlock_t* l) {
    if (rw_is_libc(l)) return libc().rwlock_unlock(l);
    return rw_unlock(l);
}

// ---- barriers ----
COGENT_HOOK int pthread_barrier_init(pthread_barrier_t* b, const pthread_barrierattr_t* attr,
                                     unsigned count) {
    if (!sync_on()) return libc().barrier_init(b, attr, count);
    int pshared = PTHREAD_PROCESS_PRIVATE;
    if (attr) pthread_barrierattr_getpshared(attr, &pshared);
    if (pshared != PTHREAD_PROCESS_PRIVATE) return libc().barrier_init(b, attr, count);
    if (count == 0 || count >= UINT_MAX / 2) return EINVAL;  // as glibc
    std::memset(static_cast<void*>(b), 0, sizeof *b);
    rep(b)->count = count;
    return 0;
}

COGENT_HOOK int pthread_barrier_destroy(pthread_barrier_t* b) {
    if (barrier_is_libc(b)) return libc().barrier_destroy(b);
    return lot::count(b) ? EBUSY : 0;
}

COGENT_HOOK int pthread_barrier_wait(pthread_barrier_t* b) {
    if (barrier_is_libc(b)) return libc().barrier_wait(b);
    return barrier_wait(b);
}

// ---- spin locks: a spin between greenlets of one thread would never end; they yield ----
// glibc's x86 convention, which its pthread_spin_init (not hooked) writes: 1 is unlocked, any
// other value locked.
constexpr int kSpinFree = 1;

COGENT_HOOK int pthread_spin_lock(pthread_spinlock_t* l) {
    if (!sync_on()) return libc().spin_lock(l);
    auto* a = reinterpret_cast<std::atomic<int>*>(const_cast<int*>(l));
    const bool green = lot::caller_is_green();
    for (unsigned i = 0;; ++i) {
        int z = kSpinFree;
        if (a->load(std::memory_order_relaxed) == kSpinFree &&
            a->compare_exchange_weak(z, 0, std::memory_order_acquire))
            return 0;
        if (green || i % 1024 == 1023)
            lot::yield("pthread_spin_lock");  // a thread gives its CPU up now and then
        else
            cpu_relax();
    }
}

COGENT_HOOK int pthread_spin_trylock(pthread_spinlock_t* l) {
    if (!sync_on()) return libc().spin_trylock(l);
    auto* a = reinterpret_cast<std::atomic<int>*>(const_cast<int*>(l));
    int z = kSpinFree;
    return a->compare_exchange_strong(z, 0, std::memory_order_acquire) ? 0 : EBUSY;
}

COGENT_HOOK int pthread_spin_unlock(pthread_spinlock_t* l) {
    if (!sync_on()) return libc().spin_unlock(l);
    reinterpret_cast<std::atomic<int>*>(const_cast<int*>(l))
        ->store(kSpinFree, std::memory_order_release);
    return 0;
}

// ---- once ----
COGENT_HOOK int pthread_once(pthread_once_t* once, void (*init)()) {
    if (!sync_on()) return libc().once(once, init);
    auto* a = reinterpret_cast<std::atomic<int>*>(once);
    // std::call_once hands its callable to init (__once_proxy) in two thread-locals, which
    // another greenlet of this thread may overwrite (or clear) while this one waits here: they
    // are the caller's again when init runs.
    void* const once_callable = std::__once_callable;
    void (*const once_call)() = std::__once_call;
    for (;;) {
        int v = a->load(std::memory_order_acquire);
        if (v & 2) return 0;
        if (v == 0) {
            if (!a->compare_exchange_strong(v, 1, std::memory_order_acq_rel)) continue;
            std::__once_callable = once_callable;
            std::__once_call = once_call;
            try {
                init();
            } catch (...) {  // not done: the next caller runs it (std::call_once's rule)
                a->store(0, std::memory_order_release);
                if (lot::may_have_waiters(once)) lot::unpark(once, UINT_MAX, ~0u, nullptr, nullptr);
                throw;
            }
            a->store(2, std::memory_order_release);
            if (lot::may_have_waiters(once)) lot::unpark(once, UINT_MAX, ~0u, nullptr, nullptr);
            return 0;
        }
        lot::Hooks h;
        h.validate = &once_running;
        h.ctx = a;
        lot::park(once, 1, h, lot::Deadline{}, "pthread_once", nullptr);
    }
}

// ---- semaphores (unnamed, process-private; others are libc's) ----
COGENT_HOOK int sem_wait(sem_t* s) {
    if (sem_is_libc(s)) return libc().sem_wait(s);
    return sem_wait_impl(s, CLOCK_REALTIME, nullptr);
}

COGENT_HOOK int sem_timedwait(sem_t* s, const timespec* abstime) {
    if (sem_is_libc(s)) return libc().sem_timedwait(s, abstime);
    if (!valid_ts(abstime)) {
        errno = EINVAL;
        return -1;
    }
    return sem_wait_impl(s, CLOCK_REALTIME, abstime);
}

COGENT_HOOK int sem_clockwait(sem_t* s, clockid_t clock, const timespec* abstime) {
    if (sem_is_libc(s)) return libc().sem_clockwait(s, clock, abstime);
    if ((clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) || !valid_ts(abstime)) {
        errno = EINVAL;
        return -1;
    }
    return sem_wait_impl(s, clock, abstime);
}

COGENT_HOOK int sem_trywait(sem_t* s) {
    if (sem_is_libc(s)) return libc().sem_trywait(s);
    if (sem_try(rep(s))) return 0;
    errno = EAGAIN;
    return -1;
}

COGENT_HOOK int sem_post(sem_t* sem) {
    if (sem_is_libc(sem)) return libc().sem_post(sem);
    SemRep* s = rep(sem);
    std::uint64_t d = s->data.load(std::memory_order_relaxed);
    for (;;) {
        if ((d & kSemValue) >= SEM_VALUE_MAX) {
            errno = EOVERFLOW;
            return -1;
        }
        if ((d >> 32) != 0) {
            lot::unpark(sem, 1, ~0u, &sem_handoff, s);
            return 0;
        }
        if (s->data.compare_exchange_weak(d, d + 1, std::memory_order_release)) return 0;
    }
}

COGENT_HOOK int sem_getvalue(sem_t* s, int* value) {
    if (sem_is_libc(s)) return libc().sem_getvalue(s, value);
    *value = int(rep(s)->data.load(std::memory_order_relaxed) & kSemValue);
    return 0;
}

// ---- yield ----
COGENT_HOOK int sched_yield() {
    if (!cooperative(Family::sync)) return libc().sched_yield();
    lot::yield("sched_yield");
    return 0;
}

// ---- syscall(SYS_futex, ...): waits of greenlets, and wakes ----
// Private futexes, and shared ones too for greenlets (libstdc++'s
// static-local guards use them), with the 10 ms re-check above for wakes from elsewhere.
COGENT_HOOK long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (long& x : a) x = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_futex && sync_on()) {
        auto* uaddr = reinterpret_cast<std::uint32_t*>(a[0]);
        const int op = int(a[1]);
        const int cmd = op & FUTEX_CMD_MASK;
        const auto val = std::uint32_t(a[2]);
        if ((cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) && lot::caller_is_green())
            return futex_wait_green(uaddr, op, val, reinterpret_cast<const timespec*>(a[3]),
                                    std::uint32_t(a[5]));
        if (cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET)
            return futex_wake_any(uaddr, op, val, std::uint32_t(a[5]));
    }
    // Straight to the kernel, as libc's syscall() does, without needing libc's: an allocator's
    // first malloc may call syscall() before the shim's table of libc functions is resolved
    // (jemalloc does, under its init lock), and resolving it allocates.
    const long r = cogent::detail::raw_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r < 0 && r > -4096) {
        errno = int(-r);
        return -1;
    }
    return r;
}

// ---- stdio locks ----
COGENT_HOOK void flockfile(FILE* f) {
    if (!cooperative(Family::sync)) return libc().flockfile(f);
    file_take(f, lot::self_token(), true);
    libc().flockfile(f);
}

COGENT_HOOK int ftrylockfile(FILE* f) {
    if (!cooperative(Family::sync)) return libc().ftrylockfile(f);
    const std::uintptr_t me = lot::self_token();
    if (!file_take(f, me, false)) return 1;
    if (libc().ftrylockfile(f) != 0) {
        file_give(f, me);
        return 1;
    }
    return 0;
}

COGENT_HOOK void funlockfile(FILE* f) {
    if (!cooperative(Family::sync)) return libc().funlockfile(f);
    libc().funlockfile(f);
    file_give(f, lot::self_token());
}

// glibc's older names of the same functions (GLIBC_2.2.5 compatibility symbols), which old
// binaries may still call.
COGENT_HOOK int __pthread_mutex_lock(pthread_mutex_t* m) { return pthread_mutex_lock(m); }
COGENT_HOOK int __pthread_mutex_unlock(pthread_mutex_t* m) { return pthread_mutex_unlock(m); }
COGENT_HOOK int __pthread_once(pthread_once_t* once, void (*init)()) {
    return pthread_once(once, init);
}

}  // extern "C"
