// The parking lot (lot.hpp).
//
// Every waiter is a record on its own stack, queued in its bucket while it waits. A green
// waiter (a greenlet of some hub) sleeps in the one Parker; a real one (a thread without a hub,
// or a hub) in a futex on a word of its record. Wake-ups:
//   - a green waiter of the unparker's own thread: Parker::wake_later (queued on the hub; the
//     unparker never switches);
//   - a green waiter of another thread: a RemoteWake handed to its hub (run_threadsafe), which
//     runs wake_later there. Posted after the bucket lock is released, because posting may take
//     locks of its own (the hub's queue mutex is a pthread mutex, which under the monkey patch
//     is one of the lot's);
//   - a real waiter: its word set to 1 and a FUTEX_WAKE.
// A waiter that leaves by itself (timeout, kill) takes the lock: still queued, it dequeues
// itself; already picked by an unpark, the unpark's token is its result (an unpark wins over
// a timeout). Bucket locks and futexes use raw system calls: the shim interposes syscall() and
// the pthread functions, and the lot is below both.
#include "wait/lot.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>

#include <atomic>
#include <climits>
#include <exception>
#include <memory>

#include "core/raw_syscall.hpp"
#include "core/thread_state.hpp"
#include "hub/hub.hpp"
#include "wait/park.hpp"

namespace cogent::detail::lot {

namespace {

long futex(void* addr, int op, std::uint32_t val, const timespec* ts = nullptr,
           std::uint32_t val3 = 0) {
    return raw_syscall(SYS_futex, long(addr), op, long(val), long(ts), 0, long(val3));
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// A bucket's lock: Drepper's futex mutex (0 free, 1 locked, 2 locked with sleepers), with a
// short spin first; held only for a few list operations.
class WordLock {
public:
    void lock() noexcept {
        std::uint32_t c = 0;
        if (v_.compare_exchange_strong(c, 1, std::memory_order_acquire)) [[likely]]
            return;
        lock_slow(c);
    }
    void unlock() noexcept {
        if (v_.exchange(0, std::memory_order_release) == 2) [[unlikely]]
            futex(&v_, FUTEX_WAKE_PRIVATE, 1);
    }
    void reset() noexcept { v_.store(0, std::memory_order_relaxed); }

private:
    [[gnu::noinline]] void lock_slow(std::uint32_t c) noexcept {
        for (int i = 0; i < 100 && c != 0; ++i) {
            cpu_relax();
            c = v_.load(std::memory_order_relaxed);
            if (c == 0 && v_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
        }
        if (c != 2) c = v_.exchange(2, std::memory_order_acquire);
        while (c != 0) {
            futex(&v_, FUTEX_WAIT_PRIVATE, 2);
            c = v_.exchange(2, std::memory_order_acquire);
        }
    }
    std::atomic<std::uint32_t> v_{0};
};

struct Waiter;

// A wake-up of a green waiter handed to another thread's hub. Two references: the unparker's
// (dropped once posted) and the hub callback's.
struct RemoteWake {
    std::atomic<int> refs{2};
    std::atomic<bool> posted{false};
    Waiter* waiter;  // null once the waiter left by itself (read and written on its thread)
    HubImpl* hub;
    void release() {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
};

struct Waiter {
    Waiter* next = nullptr;
    const void* key = nullptr;
    std::uint32_t tag = 0;
    bool queued = false;
    bool green = false;
    std::uintptr_t token = 0;            // the unparker's, once picked
    const void* thread = nullptr;        // thread_token() of the waiter
    Parker* parker = nullptr;            // green
    HubImpl* hub = nullptr;              // green
    RemoteWake* remote = nullptr;        // green: a wake-up on its way from another thread
    std::atomic<std::uint32_t> word{0};  // real: 1 once picked
};

struct alignas(64) Bucket {
    WordLock lock;
    std::atomic<std::uint32_t> n{0};  // waiters queued (or validating) in this bucket
    Waiter* head = nullptr;
    Waiter* tail = nullptr;

    void enqueue(Waiter* w) noexcept {
        w->next = nullptr;
        w->queued = true;
        if (tail)
            tail->next = w;
        else
            head = w;
        tail = w;
    }
    void remove(Waiter* w) noexcept {
        Waiter* prev = nullptr;
        for (Waiter* p = head; p; prev = p, p = p->next) {
            if (p != w) continue;
            (prev ? prev->next : head) = p->next;
            if (tail == p) tail = prev;
            p->queued = false;
            n.fetch_sub(1, std::memory_order_relaxed);
            return;
        }
    }
    bool has_key(const void* key) const noexcept {
        for (Waiter* p = head; p; p = p->next)
            if (p->key == key) return true;
        return false;
    }
};

constexpr unsigned kBucketBits = 10;
Bucket g_buckets[1u << kBucketBits];

Bucket& bucket_of(const void* key) noexcept {
    std::uint64_t x = std::uint64_t(reinterpret_cast<std::uintptr_t>(key));
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return g_buckets[x >> (64 - kBucketBits)];
}

std::int64_t to_ns(const timespec& t) noexcept {
    return std::int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// The Parker's timeout for an absolute deadline (0 once passed).
TimeoutArg relative(const Deadline& d) {
    if (d.forever) return TimeoutArg();
    timespec now{};
    clock_gettime(d.clock, &now);
    std::int64_t left = to_ns(d.at) - to_ns(now);
    return TimeoutArg(std::chrono::nanoseconds(left > 0 ? left : 0));
}

// The waiter left by itself while a remote wake-up for it may be on its way: wait until it is
// posted (so that its hub, which the unparker touches, outlives the post), then detach.
void detach_remote(Waiter& w) noexcept {
    RemoteWake* m = w.remote;
    if (!m) return;  // none, or its callback already ran
    while (!m->posted.load(std::memory_order_acquire)) raw_syscall(SYS_sched_yield);
    m->waiter = nullptr;
    w.remote = nullptr;
}

// Dequeued by itself: cancelled() under the lock.
void leave(Bucket& b, Waiter& w, const Hooks& hooks) noexcept {
    b.remove(&w);
    if (hooks.cancelled) hooks.cancelled(hooks.ctx, !b.has_key(w.key));
}

// An exception deferred by a wait that may not be interrupted: thrown into the greenlet by a
// hub callback, so at its next suspension point (or never, if it ends first).
struct Redeliver : Callback {
    GreenletImpl* g;
    std::exception_ptr exc;
    // NOLINTNEXTLINE(bugprone-throw-keyword-missing): an exception_ptr handed on, not thrown
    Redeliver(GreenletImpl* target, std::exception_ptr e) : g(target), exc(std::move(e)) {
        g->add_ref();
        fn = [](Callback* c) {
            std::unique_ptr<Redeliver> r(static_cast<Redeliver*>(c));
            if (!r->g->dead()) resume_throw(r->g, std::move(r->exc));
            r->g->release();
        };
        discard = [](Callback* c) {
            std::unique_ptr<Redeliver> r(static_cast<Redeliver*>(c));
            r->g->release();
        };
    }
};

// The Parker's storage: a deferring wait parks again after an exception, in a fresh Parker.
struct ParkerSlot {
    alignas(Parker) unsigned char buf[sizeof(Parker)];
    Parker* p = nullptr;
    Parker* make(HubImpl* hub, GreenletImpl* g) {
        reset();
        p = new (buf) Parker(hub, g);
        return p;
    }
    void reset() noexcept {
        if (p) p->~Parker();
        p = nullptr;
    }
    ~ParkerSlot() { reset(); }
};

Result park_green(Bucket& b, Waiter& w, ParkerSlot& slot, const Hooks& hooks,
                  const Deadline& deadline, const char* what, Outcome* out) {
    // The wake-up may come from another thread, which the loop cannot see coming: it stays
    // alive meanwhile (no "would block forever" while a thread may still unlock).
    struct LoopRef {
        HubImpl* hub;
        explicit LoopRef(HubImpl* h) : hub(h) { hub->keep_alive(1); }
        ~LoopRef() { hub->keep_alive(-1); }
    } ref(w.hub);
    std::exception_ptr deferred;
    bool woken = false;
    for (;;) {
        try {
            woken = slot.p->park(relative(deadline), what);
            break;
        } catch (...) {
            b.lock.lock();
            const bool mine = w.queued;
            if (mine && hooks.defer_exceptions) {
                if (!deferred) deferred = std::current_exception();
                w.parker = slot.make(w.hub, slot.p->greenlet());  // park again, still queued
                b.lock.unlock();
                continue;
            }
            if (mine) leave(b, w, hooks);
            b.lock.unlock();
            if (!mine) detach_remote(w);
            out->result = mine ? timed_out : unparked;
            out->token = w.token;
            if (!hooks.defer_exceptions) throw;
            // Picked while the exception came in: the wait is over (its wake-up is ours).
            if (!deferred) deferred = std::current_exception();
            woken = true;
            break;
        }
    }
    Result r = unparked;
    if (!woken) {
        b.lock.lock();
        if (w.queued) {
            leave(b, w, hooks);
            r = timed_out;
        }
        b.lock.unlock();
        if (r == unparked) detach_remote(w);  // picked after the timer fired: the unpark wins
    }
    out->result = r;
    out->token = w.token;
    if (deferred) w.hub->schedule(new Redeliver(slot.p->greenlet(), deferred));
    return r;
}

Result park_real(Bucket& b, Waiter& w, const Hooks& hooks, const Deadline& deadline, Outcome* out) {
    bool timed = !deadline.forever;
    while (w.word.load(std::memory_order_acquire) == 0) {
        int op = FUTEX_WAIT_BITSET_PRIVATE;
        if (timed && deadline.clock == CLOCK_REALTIME) op |= FUTEX_CLOCK_REALTIME;
        long r = futex(&w.word, op, 0, timed ? &deadline.at : nullptr, FUTEX_BITSET_MATCH_ANY);
        if (r == -ETIMEDOUT) {
            b.lock.lock();
            if (w.queued) {
                leave(b, w, hooks);
                b.lock.unlock();
                out->result = timed_out;
                return timed_out;
            }
            b.lock.unlock();
            timed = false;  // picked meanwhile: its word is about to be set
        }
    }
    out->result = unparked;
    out->token = w.token;
    return unparked;
}

// Fork: the lot is locked across it, so that no bucket is copied half-changed; the child keeps
// only the waiters of its one thread (greenlets parked on the forking thread's hub).
void fork_prepare() noexcept {
    for (auto& b : g_buckets) b.lock.lock();
}
void fork_parent() noexcept {
    for (auto& b : g_buckets) b.lock.unlock();
}
void fork_child() noexcept {
    const void* me = thread_token();
    for (auto& b : g_buckets) {
        b.lock.reset();
        Waiter* keep_head = nullptr;
        Waiter* keep_tail = nullptr;
        std::uint32_t kept = 0;
        for (Waiter* p = b.head; p;) {
            Waiter* next = p->next;
            if (p->thread == me) {
                p->next = nullptr;
                (keep_tail ? keep_tail->next : keep_head) = p;
                keep_tail = p;
                ++kept;
            }
            p = next;
        }
        b.head = keep_head;
        b.tail = keep_tail;
        b.n.store(kept, std::memory_order_relaxed);
    }
}
[[maybe_unused]] const int g_atfork = pthread_atfork(fork_prepare, fork_parent, fork_child);

}  // namespace

bool caller_is_green() noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub && ts->current != ts->hub->greenlet;
}

std::uintptr_t self_token() noexcept {
    ThreadState* ts = tls_state;
    if (ts && ts->hub && ts->current != ts->hub->greenlet)
        return reinterpret_cast<std::uintptr_t>(ts->current);
    return reinterpret_cast<std::uintptr_t>(thread_token());
}

void yield(const char* what) noexcept {
    ThreadState* ts = tls_state;
    if (!(ts && ts->hub && ts->current != ts->hub->greenlet)) {
        raw_syscall(SYS_sched_yield);
        return;
    }
    try {
        Parker::yield(ts->hub, ts->current, what);
    } catch (...) {  // thrown in meanwhile: again at the next suspension point
        try {
            ts->hub->schedule(new Redeliver(ts->current, std::current_exception()));
        } catch (...) {
        }
    }
}

Result park(const void* key, std::uint32_t tag, const Hooks& hooks, const Deadline& deadline,
            const char* what, Outcome* out) {
    Outcome local;
    if (!out) out = &local;
    ThreadState* ts = tls_state;
    HubImpl* hub = ts ? ts->hub : nullptr;
    const bool green = hub && ts->current != hub->greenlet;
    Bucket& b = bucket_of(key);
    Waiter w;
    w.key = key;
    w.tag = tag;
    w.thread = thread_token();
    w.green = green;
    // The Parker exists only for a green waiter (it needs the hub), but its storage is here.
    ParkerSlot slot;
    if (green) {
        w.parker = slot.make(hub, ts->current);
        w.hub = hub;
    }

    b.lock.lock();
    b.n.fetch_add(1, std::memory_order_seq_cst);  // before validate(): see may_have_waiters
    if (hooks.validate && !hooks.validate(hooks.ctx)) {
        b.n.fetch_sub(1, std::memory_order_relaxed);
        b.lock.unlock();
        out->result = invalid;
        return invalid;
    }
    b.enqueue(&w);
    b.lock.unlock();
    if (hooks.before_sleep) hooks.before_sleep(hooks.ctx);
    return green ? park_green(b, w, slot, hooks, deadline, what, out)
                 : park_real(b, w, hooks, deadline, out);
}

unsigned unpark(const void* key, unsigned n, std::uint32_t mask, UnparkCb cb, void* ctx) {
    Bucket& b = bucket_of(key);
    Waiter* picked = nullptr;
    Waiter* picked_tail = nullptr;
    unsigned count = 0;
    bool have_more = false;
    b.lock.lock();
    Waiter* prev = nullptr;
    for (Waiter* w = b.head; w;) {
        Waiter* next = w->next;
        if (w->key == key) {
            if (count < n && (w->tag & mask)) {
                (prev ? prev->next : b.head) = next;
                if (b.tail == w) b.tail = prev;
                w->queued = false;
                w->next = nullptr;
                (picked_tail ? picked_tail->next : picked) = w;
                picked_tail = w;
                ++count;
                w = next;
                continue;
            }
            have_more = true;
            if (count >= n) break;
        }
        prev = w;
        w = next;
    }
    b.n.fetch_sub(count, std::memory_order_relaxed);
    const std::uintptr_t token = cb ? cb(ctx, count, have_more) : 0;
    const void* me = thread_token();
    for (Waiter* w = picked; w; w = w->next) {
        w->token = token;
        if (w->green && w->thread != me) {
            auto* m = new RemoteWake;
            m->waiter = w;
            m->hub = w->hub;
            w->remote = m;
        }
    }
    b.lock.unlock();
    for (Waiter* w = picked; w;) {
        Waiter* next = w->next;  // w may be gone once woken
        if (!w->green) {
            w->word.store(1, std::memory_order_release);
            futex(&w->word, FUTEX_WAKE_PRIVATE, 1);
        } else if (RemoteWake* m = w->remote) {
            try {
                m->hub->run_threadsafe([m] {
                    if (Waiter* x = m->waiter) {
                        x->remote = nullptr;
                        x->parker->wake_later();
                    }
                    m->release();
                });
            } catch (...) {
                // Out of memory for the hand-over: the waiter is left to its timeout (or a
                // kill), and m to the waiter's detach (the callback's reference leaks).
            }
            m->posted.store(true, std::memory_order_release);
            m->release();
        } else {
            w->parker->wake_later();
        }
        w = next;
    }
    return count;
}

bool may_have_waiters(const void* key) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return bucket_of(key).n.load(std::memory_order_relaxed) != 0;
}

unsigned count(const void* key) noexcept {
    Bucket& b = bucket_of(key);
    unsigned c = 0;
    b.lock.lock();
    for (Waiter* w = b.head; w; w = w->next)
        if (w->key == key) ++c;
    b.lock.unlock();
    return c;
}

}  // namespace cogent::detail::lot
