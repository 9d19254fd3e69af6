// signal_handler (signal.hpp). libev delivers signals only to its default loop, which the main
// thread's hub owns, so every handler lives there: one loop::Signal per signal number, started
// by the first handler and stopped by the last, and a list of handlers it spawns greenlets for
// (in installation order; libev's own per-signal list runs newest first). Other threads reach
// the main hub through its thread-safe callback queue.
#include "cogent/signal.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "cogent/async_result.hpp"
#include "cogent/greenlet.hpp"
#include "hub/hub.hpp"
#include "loop/loop.hpp"
#include "loop/watchers.hpp"

namespace cogent::detail {

struct SignalState {
    int signum = 0;
    std::function<void()> fn;
    std::atomic<bool> cancelled{false};
    bool installed = false;  // in its slot's list (main hub thread only)
};

namespace {

// ---- the main hub ----
std::mutex g_main_mu;
HubImpl* g_main_hub = nullptr;

void on_fork_child_signals() {
    // The forking thread is the child's only (hence main) thread; its hub is the main hub only
    // if it runs the default loop. The lock may have been held by a thread that is gone.
    new (&g_main_mu) std::mutex;
    ThreadState* ts = tls_state;
    g_main_hub = ts && ts->hub && ts->hub->loop().is_default() ? ts->hub : nullptr;
}

bool is_main_hub(HubImpl* h) {
    std::lock_guard<std::mutex> lk(g_main_mu);
    return h && h == g_main_hub;
}

bool run_on_main_hub(std::function<void()> fn) {
    std::lock_guard<std::mutex> lk(g_main_mu);
    if (!g_main_hub) return false;
    g_main_hub->run_threadsafe(std::move(fn));
    return true;
}

// ---- per-signal slots (touched only on the main hub's thread) ----
struct Slot {
    loop::Signal w;
    struct sigaction prev {};
    std::vector<std::shared_ptr<SignalState>> handlers;
};

// [NSIG], made by the first install and never destroyed: handlers may stay installed until
// exit.
Slot* g_slots = nullptr;

Slot& slot_of(int signum) {
    if (!g_slots) g_slots = new Slot[NSIG];
    return g_slots[signum];
}

void on_signal(loop::Signal& w) {
    auto* slot = static_cast<Slot*>(w.data());
    // A copy: spawning never runs a handler now, but keep the loop immune to list changes.
    std::vector<std::shared_ptr<SignalState>> handlers = slot->handlers;
    for (auto& h : handlers) {
        if (h->cancelled.load(std::memory_order_acquire)) continue;
        try {
            SpawnOptions opts;
            opts.name = "signal_handler(" + std::to_string(h->signum) + ")";
            spawn(opts, [h] { h->fn(); });
        } catch (...) {
            report_exception("starting a signal handler", std::current_exception());
        }
    }
}

void install_local(HubImpl* hub, const std::shared_ptr<SignalState>& st) {
    if (st->cancelled.load(std::memory_order_acquire) || st->installed) return;
    Slot& slot = slot_of(st->signum);
    if (slot.handlers.empty()) {
        // libev puts SIG_DFL back when the watcher stops; remember what to restore instead.
        sigaction(st->signum, nullptr, &slot.prev);
        slot.w.set_callback(&on_signal, &slot);
        slot.handlers.reserve(4);
        slot.w.start(hub->loop(), st->signum);
    }
    slot.handlers.push_back(st);
    st->installed = true;
}

// Stop watching the slot's signal and give it back its disposition from before.
void stop_slot(Slot& slot, int signum) noexcept {
    // Between libev's SIG_DFL and our restore, a signal would get the default action (for most
    // signals: death). Hold it back in this thread meanwhile; it is delivered to the restored
    // disposition on unblock. (Another thread that does not block it could still take it in
    // that window: install handlers from threads that block the signal, or accept the risk.)
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signum);
    pthread_sigmask(SIG_BLOCK, &one, &old);
    slot.w.stop();
    sigaction(signum, &slot.prev, nullptr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void cancel_local(const std::shared_ptr<SignalState>& st) noexcept {
    if (!st->installed) return;
    st->installed = false;
    Slot& slot = slot_of(st->signum);
    auto it = std::find(slot.handlers.begin(), slot.handlers.end(), st);
    if (it != slot.handlers.end()) slot.handlers.erase(it);
    if (!slot.handlers.empty()) return;
    stop_slot(slot, st->signum);
}

void check_signum(int signum) {
    auto bad = [&](const char* why) {
        throw std::invalid_argument("cogent: signal_handler(" + std::to_string(signum) +
                                    "): " + why);
    };
    if (signum <= 0 || signum >= NSIG) bad("not a valid signal number");
    if (signum == SIGKILL || signum == SIGSTOP) bad("SIGKILL and SIGSTOP cannot be caught");
    if (signum == SIGSEGV || signum == SIGBUS || signum == SIGFPE || signum == SIGILL)
        bad("a synchronous fault signal cannot be handled in a greenlet (the faulting code "
            "would run again first)");
    if (signum == SIGCHLD)
        bad("SIGCHLD is reserved: on libev's default loop it reaps every child with "
            "waitpid(-1); wait for children through cogent's subprocess support");
    if (signum > 31 && signum < SIGRTMIN) bad("reserved by glibc for its threads");
}

// Record (alive) or forget the main thread's hub, the one on libev's default loop.
void set_main_hub(HubImpl* hub, bool alive) noexcept {
    static std::once_flag hook_once;
    try {
        std::call_once(hook_once, [] { add_fork_child_hook(&on_fork_child_signals); });
    } catch (...) {
        report_exception("registering the signal fork hook", std::current_exception());
    }
    std::lock_guard<std::mutex> lk(g_main_mu);
    if (alive) {
        g_main_hub = hub;
    } else if (g_main_hub == hub) {
        g_main_hub = nullptr;
    } else {
        return;
    }
    // The watchers are bound to the main hub's loop: handlers still installed when it ends
    // stop being watched (their signals get the disposition from before), and a later main hub
    // watches them again.
    if (!g_slots) return;
    for (int signum = 1; signum < NSIG; ++signum) {
        Slot& slot = slot_of(signum);
        if (slot.handlers.empty()) continue;
        if (!alive)
            stop_slot(slot, signum);
        else if (!slot.w.active())
            slot.w.start(hub->loop(), signum);
    }
}

// Signal watchers live on the main thread's hub, the one on libev's default loop.
[[maybe_unused]] const HubHooksRegistration g_signal_hub_hooks{{
    .created =
        [](HubImpl* hub) noexcept {
            if (hub->loop().is_default()) set_main_hub(hub, true);
        },
    .closing = [](HubImpl* hub) noexcept { set_main_hub(hub, false); },
}};
}  // namespace

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

SignalHandler signal_handler(int signum, std::function<void()> fn) {
    check_signum(signum);
    if (!fn) throw std::invalid_argument("cogent: signal_handler needs a callable");
    auto st = std::make_shared<SignalState>();
    st->signum = signum;
    st->fn = std::move(fn);
    HubImpl* hub = hub_of(thread_state_fast());
    if (is_main_hub(hub)) {
        install_local(hub, st);
        return SignalHandler(std::move(st));
    }
    // Another thread: install on the main hub and wait (cooperatively) until it is in place.
    auto done = std::make_shared<AsyncResult<void>>();
    bool posted = run_on_main_hub([st, done] {
        try {
            install_local(tls_state->hub, st);  // we run on the main hub's thread
        } catch (...) {
            done->set_exception(std::current_exception());
            return;
        }
        done->set();
    });
    if (!posted)
        throw std::logic_error(
            "cogent: signal_handler called from a thread other than the main one, but the main "
            "thread has no hub (signals are delivered to the main hub; call cogent::get_hub() on "
            "the main thread first, and keep it running)");
    try {
        done->get();
    } catch (...) {
        // Interrupted (kill, Timeout) or failed: make sure it does not stay installed unowned.
        st->cancelled.store(true, std::memory_order_release);
        run_on_main_hub([st] { cancel_local(st); });
        throw;
    }
    return SignalHandler(std::move(st));
}

SignalHandler& SignalHandler::operator=(SignalHandler&& o) noexcept {
    if (this != &o) {
        cancel();
        state_ = std::move(o.state_);
    }
    return *this;
}

void SignalHandler::cancel() noexcept {
    std::shared_ptr<SignalState> st = std::move(state_);
    if (!st || st->cancelled.exchange(true, std::memory_order_acq_rel)) return;
    ThreadState* ts = tls_state;
    if (ts && is_main_hub(ts->hub)) {
        cancel_local(st);
        return;
    }
    try {
        // No main hub any more: nothing will ever run its loop, and `cancelled` already keeps
        // a handler from starting.
        run_on_main_hub([st] { cancel_local(st); });
    } catch (...) {
        // Out of memory queueing it: the handler stays registered but never runs again.
    }
}

bool SignalHandler::active() const noexcept {
    return state_ && !state_->cancelled.load(std::memory_order_acquire);
}

int SignalHandler::signum() const noexcept { return state_ ? state_->signum : 0; }

}  // namespace cogent
