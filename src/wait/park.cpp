// The one parker (park.hpp), and the waits built directly on it: a WaitList's (park), sleep,
// idle and the hub's join.
#include "wait/park.hpp"

#include <algorithm>
#include <string>

#include "cogent/exceptions.hpp"
#include "cogent/hub.hpp"

namespace cogent::detail {

void invalid_switch(const char* what) {
    throw InvalidSwitchError(std::string("cogent: unexpected switch into a greenlet waiting in ") +
                             what);
}

void Parker::on_timer(loop::Timer& t) {
    auto* self = static_cast<Parker*>(t.data());
    self->timed_out_ = true;
    if (self->on_timeout_) self->on_timeout_(self->timeout_ctx_);
    resume(self->g_);
}

void throw_destroyed(const char* kind, const char* what, GreenletImpl* g) {
    std::string k = kind ? kind : "";
    if (k.empty()) {
        std::string w = what;
        auto colons = w.find("::");
        k = colons == std::string::npos ? "waitable object" : w.substr(0, colons);
    }
    char name[96];
    g->describe(name, sizeof name);
    throw WaitableDestroyed("cogent: " + k + " destroyed while " + name + " waited in " + what);
}

namespace {
// A greenlet parked on a WaitList.
// The fields a wake and the return from park() touch come first: WaitNode's, these two and
// the Parker's own (its timer and queued wake-up, rarely used, last), so that waking one of a
// thousand parked greenlets touches as few cache lines of its stack as possible.
struct ListWaiter : WaitNode {
    const char* destroyed = nullptr;  // abandoned: the kind of the destroyed object
    bool* gone = nullptr;             // park()'s out-parameter
    Parker p;
    ListWaiter(HubImpl* hub, GreenletImpl* g, bool* gone_) noexcept : gone(gone_), p(hub, g) {
        on_wake = [](WaitNode* n) { static_cast<ListWaiter*>(n)->p.wake(); };
        on_abandon = &ListWaiter::abandon;
    }
    static void on_timeout(void* self) { static_cast<ListWaiter*>(self)->unlink(); }
    ~ListWaiter() { unlink(); }
    // The object is being destroyed (we are already unlinked): mark, disarm, queue the wake.
    // Runs in the destroyer's frame; the WaitableDestroyed is thrown by park() in ours.
    static void abandon(WaitNode* n, const char* kind) noexcept {
        auto* self = static_cast<ListWaiter*>(n);
        self->destroyed = kind;
        if (kind && self->gone) *self->gone = true;
        self->p.wake_later();
    }
};
}  // namespace

bool park(WaitList& list, TimeoutArg timeout, const char* what, bool* gone) {
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    HubImpl* hub = hub_of(ts);
    if (cur == hub->greenlet) hub->switch_out(cur, what);  // throws BlockingSwitchOutError
    if (timeout.zero()) return false;
    ListWaiter w(hub, cur, gone);
    list.push_back(&w);
    if (!timeout.forever()) w.p.on_timeout(&ListWaiter::on_timeout, &w);
    if (!w.p.park(timeout, what)) return false;
    if (w.destroyed) [[unlikely]]
        throw_destroyed(w.destroyed, what, cur);
    return true;  // woken, or abandoned when the wait was over anyway (WaitNode::on_abandon)
}

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

bool Hub::join(TimeoutArg timeout) {
    ThreadState* ts = thread_state_fast();
    if (ts->hub != impl_)
        throw GreenletError(
            "cogent: Hub::join (wait() with no objects) called from another thread");
    if (ts->current == impl_->greenlet) blocking_on_hub("Hub::join (wait() with no objects)");
    if (ts->current != ts->main)
        throw GreenletError(
            "cogent: Hub::join (wait() with no objects) is only possible from the main greenlet "
            "(it returns when the loop has nothing left, which it learns through LoopExit)");
    // The loop reports "nothing left" by throwing LoopExit into the main greenlet, whatever it
    // waits on: wait on something nobody wakes, or on an unreferenced timer for the timeout.
    try {
        if (timeout.forever()) {
            Parker p(impl_, ts->current);
            p.park({}, "Hub::join");  // nothing wakes it: returns only by throwing
            invalid_switch("Hub::join");
        }
        sleep(std::max(timeout.value(), Duration(1)), /*ref=*/false);
        return false;
    } catch (const LoopExit&) {
        return true;
    }
}

void sleep(Duration d, bool ref) {
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    HubImpl* hub = hub_of(ts);
    if (d <= Duration::zero()) return Parker::yield(hub, cur, "sleep(0)");
    Parker p(hub, cur);
    if (p.park(d, "sleep()", ref)) invalid_switch("sleep()");  // nothing wakes it
}

void idle() {
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    HubImpl* hub = hub_of(ts);
    if (cur == hub->greenlet) hub->switch_out(cur, "idle()");  // throws
    Parker p(hub, cur);
    loop::Idle w(
        [](loop::Idle& self) {
            auto* p = static_cast<Parker*>(self.data());
            if (!p->hub()->callbacks.empty()) return;  // runnable greenlets first
            self.stop();
            p->wake();
        },
        &p);
    w.start(hub->loop());
    p.park({}, "idle()");
}

}  // namespace cogent
