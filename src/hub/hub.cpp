// The hub: one per thread, a greenlet running the libev loop and a FIFO callback queue.
#include "cogent/hub.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include "cogent/exceptions.hpp"
#include "core/switch.hpp"
#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent::detail {

// While greenlets keep yielding, the hub still polls I/O and timers at least this often.
// gevent's switch interval allows 5 ms; we promise 1 ms and aim at half of it.
constexpr std::uint64_t kPollIntervalNs = 500'000;

namespace {
std::atomic<std::uint64_t> g_hub_index{0};

class HubGreenlet final : public GreenletImpl {
public:
    HubGreenlet(HubImpl* h, GreenletImpl* main) : GreenletImpl(main, 0), hub_(h) {}
    void body() override { hub_->run(); }
    void describe(char* buf, std::size_t len) const noexcept override {
        snprintf(buf, len, "<Hub of thread %llu>", (unsigned long long)hub_->thread_index());
    }

private:
    HubImpl* hub_;
};

// The hook sets of add_hub_hooks, registered at static initialisation (before any hub).
constexpr int kMaxHubHooks = 8;
HubHooks g_hub_hooks[kMaxHubHooks];
int g_hub_hook_count = 0;

template <class Member>
void run_hub_hooks(Member which, HubImpl* hub) noexcept {
    for (int i = 0; i < g_hub_hook_count; ++i)
        if (auto hook = g_hub_hooks[i].*which) hook(hub);
}
}  // namespace

void add_hub_hooks(const HubHooks& hooks) {
    if (g_hub_hook_count >= kMaxHubHooks) throw std::logic_error("cogent: too many hub hooks");
    g_hub_hooks[g_hub_hook_count++] = hooks;
}

namespace {
bool on_main_thread() noexcept { return syscall(SYS_gettid) == getpid(); }

// The registry behind for_each_hub. A fork child keeps only the forking thread's hub.
std::mutex g_hubs_mu;
std::vector<HubImpl*> g_hubs;
}  // namespace

void for_each_hub(void (*fn)(HubImpl*, void*), void* ctx) noexcept {
    std::lock_guard<std::mutex> lk(g_hubs_mu);
    for (HubImpl* h : g_hubs) fn(h, ctx);
}

// Signal watchers only work on libev's default loop: the main thread gets it.
HubImpl::HubImpl(ThreadState* ts_) : ts(ts_), loop_(on_main_thread()) {
    loop_.set_wakeup(&HubImpl::on_wakeup, this);
    greenlet = new HubGreenlet(this, ts->main);
    index_ = ++g_hub_index;
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    {
        std::lock_guard<std::mutex> lk(g_hubs_mu);
        g_hubs.push_back(this);
    }
    run_hub_hooks(&HubHooks::created, this);  // signal.cpp notes the main thread's hub
}

HubImpl::~HubImpl() {
    {
        std::lock_guard<std::mutex> lk(g_hubs_mu);
        g_hubs.erase(std::remove(g_hubs.begin(), g_hubs.end(), this), g_hubs.end());
    }
    // signal.cpp forgets the main hub; dns.cpp drops the resolvers' channels (c-ares watchers
    // are on this loop), which may queue wakes: dropped below.
    run_hub_hooks(&HubHooks::closing, this);
    while (Callback* cb = callbacks.pop_front())
        if (cb->discard) cb->discard(cb);
    // io.cpp stops the fd watchers still armed (kept read watchers of open sockets).
    run_hub_hooks(&HubHooks::destroy, this);
    greenlet->release();
}  // then ~Loop: the loop goes (unless it is libev's default one)

void HubImpl::after_fork() noexcept {
    loop_.fork();  // libev builds a new epoll fd (and async pipe) at its next iteration
    // io.cpp: libev re-adds every watched fd: have them checked first.
    run_hub_hooks(&HubHooks::after_fork, this);
    // Another thread may have held the lock at the fork; it no longer exists to release it.
    new (&remote_mu_) std::mutex;
    // The other threads' hubs are gone with their threads (their memory is never freed).
    new (&g_hubs_mu) std::mutex;
    g_hubs.assign(1, this);
    tid = static_cast<pid_t>(syscall(SYS_gettid));
}

namespace {
void teardown_hub(ThreadState* ts);
void hub_after_fork(HubImpl* hub) noexcept { hub->after_fork(); }
constexpr HubOps kHubOps{&teardown_hub, &hub_after_fork};
}  // namespace

HubImpl* create_hub(ThreadState* ts) {
    set_hub_ops(&kHubOps);  // once; also installs the fork-child handler
    if (!ts->hub) {
        if (ts->tearing_down) throw std::runtime_error("cogent: the thread's hub is shutting down");
        (void)config();  // a malformed setting throws here, before a loop or fd exists
        ts->hub = new HubImpl(ts);
        ts->hub_greenlet = ts->hub->greenlet;
    }
    return ts->hub;
}

void HubImpl::request_break() noexcept {
    break_requested = true;
    loop_.break_one();
}

void HubImpl::poll(bool nowait) {
    in_ev_run = true;
    if (nowait)
        loop_.run_nowait();
    else
        loop_.run();
    in_ev_run = false;
    last_poll_ns.store(monotonic_ns(), std::memory_order_relaxed);
}

void HubImpl::run_callbacks() {
    // One round: every callback queued before this point runs once, then (until the poll
    // interval has passed) those queued meanwhile: a yield or a start queued during the round
    // waits for it to end, so I/O and timers are polled at least every kPollIntervalNs while
    // greenlets keep yielding, and a burst of starts or wakes queued while a poll resumed
    // thousands of readers runs whole before the next poll (else a busy server would start a
    // new connection's greenlet only a few at a time between its I/O rounds).
    callbacks.push_back(&round_end);
    bool in_round = true;
    unsigned n = 0;
    while (Callback* cb = callbacks.pop_front()) {
        if (cb == &round_end) [[unlikely]] {
            in_round = false;
            if (monotonic_ns() - last_poll_ns.load(std::memory_order_relaxed) >= kPollIntervalNs)
                return;
            continue;
        }
        if (cb->fn == &WakeCallback::fire) {
            // The common case (a yield, a start): jump from this frame, not from inside fn.
            auto* w = static_cast<WakeCallback*>(cb);
            w->woken = true;
            GreenletImpl* g = w->g;  // w may be gone once g runs
            const bool owned = w->owns_ref;
            if (!g->dead() && startable(ts, g)) {
                jump(ts, greenlet, g);
                after_hub_resume(greenlet);
            }
            if (owned) g->release();
        } else {
            cb->fn(cb);
        }
        if (leave_requested) break;
        // A clock read every 16 callbacks keeps yields free of system calls (the vDSO clock is
        // not one) while bounding how long I/O and timers can be kept waiting.
        if (!in_round && (++n & 15u) == 0 &&
            monotonic_ns() - last_poll_ns.load(std::memory_order_relaxed) >= kPollIntervalNs)
            return;
    }
    round_end.unlink();  // left early (teardown), or every callback ran
}

void HubImpl::run() {
    last_poll_ns.store(monotonic_ns(), std::memory_order_relaxed);
    for (;;) {
        if (leave_requested) [[unlikely]] {
            if (stopping) break;
            // Thread teardown: we are between callbacks now, nothing half done. Hand control
            // back to main, which unwinds the remaining greenlets.
            park_requested = false;
            leave_requested = false;
            resume(ts->main);
            continue;
        }
        run_callbacks();
        // Teardown wins over whatever keeps the loop alive (a periodic sleeper's timer): main
        // may have been resumed from one of these callbacks, so it is parked from here, before
        // the next poll, not from a poll that might never return.
        if (leave_requested) continue;
        if (!callbacks.empty()) {
            poll(/*nowait=*/true);
            continue;
        }
        break_requested = false;
        poll(/*nowait=*/false);  // until break_one (a callback was queued) or nothing referenced is
                                 // active
        if (leave_requested) continue;
        if (callbacks.empty() && !break_requested) {
            GreenletImpl* m = ts->main;
            if (ts->tearing_down) {
                resume(m);
            } else {
                char what[160];
                snprintf(what, sizeof what, "%s", m->waiting_on ? m->waiting_on : "hub.switch()");
                char hubname[64];
                greenlet->describe(hubname, sizeof hubname);
                std::string msg = std::string("This operation would block forever\n\tHub: ") +
                                  hubname + "\n\tWaiting on: " + what;
                resume_throw(m, std::make_exception_ptr(LoopExit(msg)));
            }
        }
    }
}

void HubImpl::request_park() noexcept {
    park_requested = true;
    leave_requested = true;
    if (in_ev_run) loop_.break_all();
}

void HubImpl::on_wakeup(void* hub) {
    auto* self = static_cast<HubImpl*>(hub);
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard<std::mutex> lk(self->remote_mu_);
        batch.swap(self->remote_);
    }
    for (auto& fn : batch) {
        try {
            fn();
        } catch (...) {
            report_exception("a thread-safe hub callback", std::current_exception());
        }
    }
}

void HubImpl::run_threadsafe(std::function<void()> fn) {
    {
        std::lock_guard<std::mutex> lk(remote_mu_);
        remote_.push_back(std::move(fn));
    }
    loop_.wake();
}

void HubImpl::keep_alive(int delta) noexcept {
    for (; delta > 0; --delta) loop_.ref();
    for (; delta < 0; ++delta) loop_.unref();
}

void HubImpl::stop_and_join() {
    stopping = true;
    leave_requested = true;
    if (greenlet->started() && !greenlet->dead()) {
        if (in_ev_run) loop_.break_all();
        try {
            switch_to(greenlet, {});
        } catch (...) {
            report_exception("hub shutdown", std::current_exception());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Thread state teardown: unwind every greenlet still suspended, then stop the hub.

namespace {
// How long the hub may run the cleanups of unwound greenlets that block (a sleep in a
// destructor, a join of a child) before what is left is reported as leaked, and how many times
// GreenletExit is thrown into one that swallows it.
constexpr std::chrono::seconds kUnwindBudget{2};
constexpr int kUnwindRounds = 3;

// An unreferenced timer on the hub's loop: it bounds the unwinding without keeping the loop
// alive, and brings main back when it fires.
struct UnwindDeadline {
    loop::Timer timer{&UnwindDeadline::fire, this};
    GreenletImpl* main;
    bool expired = false;
    UnwindDeadline(HubImpl* hub, GreenletImpl* m) : main(m) {
        timer.start(hub->loop(), std::chrono::duration_cast<Duration>(kUnwindBudget),
                    /*ref=*/false);
    }
    static void fire(loop::Timer& t) {
        auto* self = static_cast<UnwindDeadline*>(t.data());
        self->expired = true;
        resume(self->main);
    }
};

// A GreenletExit on its way into a greenlet being unwound, thrown from the hub: a victim whose
// cleanup blocks then parks like any greenlet, and the hub goes on to the next one.
struct UnwindThrow : Callback {
    Ref<GreenletImpl> target;
    explicit UnwindThrow(GreenletImpl* g) : target(Ref<GreenletImpl>::share(g)) {
        fn = [](Callback* c) {
            std::unique_ptr<UnwindThrow> self(static_cast<UnwindThrow*>(c));
            GreenletImpl* g = self->target.get();
            if (!g->dead()) resume_throw(g, std::make_exception_ptr(GreenletExit()));
        };
        discard = [](Callback* c) { delete static_cast<UnwindThrow*>(c); };
    }
};

// Teardown, from main with the hub parked: throw GreenletExit into every greenlet left, let the
// hub run their blocking cleanups for a bounded time, report those that stay.
void unwind_greenlets(ThreadState* ts) {
    HubImpl* hub = ts->hub;
    GreenletImpl* main = ts->main;
    List<GreenletImpl>& live = ts->live;
    GreenletImpl* hg = hub->greenlet;
    auto alive = [&] {
        std::size_t n = 0;
        live.for_each([&](GreenletImpl* g) {
            if (g != hg && !g->dead()) ++n;
        });
        return n;
    };
    UnwindDeadline deadline(hub, main);
    for (int round = 0; round < kUnwindRounds && !deadline.expired; ++round) {
        std::vector<GreenletImpl*> victims;
        live.for_each([&](GreenletImpl* g) {
            if (g != hg && !g->dead()) victims.push_back(g);
        });
        if (victims.empty()) break;
        // GreenletExit into all of them, from the hub: one whose cleanup blocks (or that
        // swallows it and sleeps on) must not keep the others from being told.
        for (GreenletImpl* v : victims) {
            set_parent(v, main);  // so that its death comes straight back here
            hub->schedule(new UnwindThrow(v));
        }
        // Main is resumed when one dies, at the deadline, or when the loop has nothing left:
        // those left then wait on something nobody will set, and the next round throws again.
        for (std::size_t n = alive(); n && !deadline.expired;) {
            try {
                switch_to(hg, {});
            } catch (...) {
                // An exception escaping an unwound greenlet: keep going.
            }
            const std::size_t now = alive();
            if (now == n) break;
            n = now;
        }
    }
    std::string names;
    std::size_t left = 0;
    live.for_each([&](GreenletImpl* g) {
        if (g == hg || g->dead()) return;
        char buf[160];
        g->describe(buf, sizeof buf);
        if (left++ < 8) names += std::string(left > 1 ? ", " : "") + buf;
    });
    if (left)
        fprintf(
            stderr,
            "cogent: %zu greenlet(s) would not exit at thread exit (GreenletExit thrown in up to "
            "%d times, their cleanups given up to %.0f s); leaked: %s%s\n",
            left, kUnwindRounds, double(kUnwindBudget.count()), names.c_str(),
            left > 8 ? ", ..." : "");
}

// HubOps::teardown: ~ThreadState (tearing_down is set), from the main greenlet.
void teardown_hub(ThreadState* ts) {
    HubImpl* hub = ts->hub;
    // The hub may be suspended in the middle of a callback (main returned from a greenlet woken
    // by it), or polling a loop that a periodic timer keeps alive. Let it finish that callback
    // first, or it would later resume with state belonging to greenlets unwound below; it parks
    // before its next poll whatever keeps the loop alive.
    GreenletImpl* hg = hub->greenlet;
    if (hg->started() && !hg->dead()) {
        hub->request_park();
        try {
            switch_to(hg, {});
        } catch (...) {
        }
    }
    unwind_greenlets(ts);
    hub->stop_and_join();
    delete hub;
    ts->hub = nullptr;
    ts->hub_greenlet = nullptr;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Blocking: what may not block, and the queue of the thread's hub. Parking is in wait/.

void check_may_block(const char* what) {
    ThreadState* ts = thread_state_fast();
    if (ts->hub && ts->current == ts->hub->greenlet)
        throw BlockingSwitchOutError(std::string("cogent: ") + what +
                                     " would block the hub; hub callbacks and rawlinks must not "
                                     "wait (spawn a greenlet instead)");
}

[[noreturn, gnu::cold]] void blocking_on_hub(const char* what) {
    throw BlockingSwitchOutError(std::string("cogent: ") + what +
                                 " would block the hub; hub callbacks and rawlinks must not "
                                 "wait (spawn a greenlet instead)");
}

void schedule(Callback* cb) { hub_of(thread_state_fast())->schedule(cb); }

GreenletImpl* hub_greenlet() { return hub_of(thread_state_fast())->greenlet; }

}  // namespace cogent::detail

// ---------------------------------------------------------------------------------------------
// Public hub API

namespace cogent {

using namespace detail;

Hub get_hub() { return Hub(hub_of(thread_state())); }

namespace {
struct FnCallback : Callback {
    std::function<void()> fn_;
};
}  // namespace

void Hub::run_callback(std::function<void()> fn) {
    if (!fn) throw std::invalid_argument("cogent: run_callback needs a callable");
    ThreadState* ts = thread_state_fast();
    if (ts->hub != impl_)
        throw GreenletError(
            "cogent: Hub::run_callback called from another thread; use "
            "run_callback_threadsafe");
    auto* cb = new FnCallback;
    cb->fn_ = std::move(fn);
    cb->fn = [](Callback* c) {
        auto* self = static_cast<FnCallback*>(c);
        try {
            self->fn_();
        } catch (...) {
            report_exception("a hub callback", std::current_exception());
        }
        delete self;
    };
    cb->discard = [](Callback* c) { delete static_cast<FnCallback*>(c); };
    impl_->schedule(cb);
}

void Hub::run_callback_threadsafe(std::function<void()> fn) {
    if (!fn) throw std::invalid_argument("cogent: run_callback_threadsafe needs a callable");
    impl_->run_threadsafe(std::move(fn));
}

std::uint64_t Hub::index() const noexcept { return impl_->thread_index(); }

bool Hub::is_current_thread() const noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub == impl_;
}

}  // namespace cogent
