// The one wait mechanism's wake-up side (Linkable: rounds of wake-ups, rawlinks), and iwait's
// MultiWait on top of it (joinall and killall: greenlet/wait_greenlets.cpp).
#include "cogent/wait.hpp"

#include <atomic>
#include <cstdint>
#include <memory>

#include "hub/hub.hpp"

namespace cogent {

using namespace detail;

namespace detail {

// ---------------------------------------------------------------------------------------------
// Linkable

// The round under way, on the hub's stack while run_notify walks the links.
struct Linkable::NotifyRun {
    bool alive = true;      // cleared by ~Linkable: a woken party destroyed the object
    bool arrivals = false;  // wait_turn() queued a waiter behind this round
};

namespace {
// A rawlink: owned by the object's list until it fires (then by fire) or is removed.
struct RawLink : WaitNode {
    LinkId id = 0;
    Linkable* owner = nullptr;
    std::function<void(Linkable&)> fn;
    static void fire(WaitNode* n);
};

void RawLink::fire(WaitNode* n) {
    std::unique_ptr<RawLink> self(static_cast<RawLink*>(n));
    try {
        self->fn(*self->owner);
    } catch (...) {
        report_exception("a rawlink callback", std::current_exception());
    }
}

// Link ids are numbers never handed out twice in the process, so a stale id (of a link that
// fired or was removed) can never name a newer link, on any object.
std::atomic<LinkId> next_link_id{1};
}  // namespace

Linkable::Linkable(bool bounded_rounds) noexcept {
    notify_cb_.self = this;
    notify_cb_.fn = bounded_rounds ? &Linkable::run_notify<true> : &Linkable::run_notify<false>;
    notify_cb_.discard = [](Callback* cb) { static_cast<NotifyCb*>(cb)->self->keepalive(false); };
}

Linkable::~Linkable() {
    notify_cb_.unlink();
    if (run_) run_->alive = false;
    // Never leave nodes pointing here: waiters are woken with WaitableDestroyed (queued),
    // rawlinks are ours to free.
    abandon_all(waiters_, kind_ ? kind_ : "");
}

void Linkable::throw_foreign_thread(const char* what) const {
    // Nothing of the object is read but its name (fixed at construction for all but greenlets,
    // whose name only their own thread sets): the owner may be using it right now.
    std::string name = name_for_errors();
    if (name.empty())
        throw GreenletError(std::string("cogent: ") + what +
                            " called from another thread; a waitable object belongs to the "
                            "thread that created it (only AsyncResult::set/set_exception and "
                            "Hub::run_callback_threadsafe may be called from other threads)");
    throw GreenletError("cogent: " + name + "." + what + "() called from another thread; " + name +
                        " belongs to the thread that created it (use "
                        "Hub::run_callback_threadsafe to reach it from another thread)");
}

bool Linkable::wait_ready(TimeoutArg timeout, const char* what) {
    check_thread(what);
    if (ready()) return true;
    return park(waiters_, timeout, what) || ready();
}

void Linkable::link(WaitNode* n) {
    check_thread("link");
    waiters_.push_back(n);
    if (ready()) notify();
}

void Linkable::notify() {
    // The thread check comes first: from another thread even reading the list is a race.
    check_thread("notify");
    if (run_ || notify_cb_.linked() || waiters_.empty()) return;
    keepalive(true);
    schedule(&notify_cb_);
}

// gevent's AbstractLinkable._notify_links (Bounded): first the links that were
// there when the round began (each only while ready(), except those notify_all_linked() or
// wait_turn() covered), then, once, those that arrived through wait_turn() meanwhile. Links
// added later (a woken greenlet waiting again, a rawlink added by a rawlink) wait for the next
// round, scheduled below: a party that keeps coming back cannot hold the hub in one callback,
// and the FIFO order holds across rounds. Unbounded (gevent's Greenlet._notify_links), the
// round goes on while there are links and ready() holds.
template <bool Bounded>
void Linkable::run_notify(Callback* cb) {
    Linkable* self = static_cast<NotifyCb*>(cb)->self;
    NotifyRun run;
    self->run_ = &run;
    std::uint64_t end = Bounded ? self->waiters_.next_seq() : UINT64_MAX;
    for (;;) {
        while (WaitNode* n = self->waiters_.front()) {
            if (n->seq >= end) break;
            if (n->seq >= self->all_until_ && !self->ready()) break;
            n->unlink();
            n->on_wake(n);           // may switch into a greenlet, which runs until it yields back
            if (!run.alive) return;  // a woken party destroyed the object
        }
        if (!Bounded || !run.arrivals) break;
        run.arrivals = false;
        end = self->waiters_.next_seq();  // only once: later arrivals go to the next round
    }
    self->run_ = nullptr;
    // Links left that are due (added during the round while ready, or owed a wake-up by a
    // set() or an arrival): another round, keeping this round's keepalive.
    WaitNode* first = self->waiters_.front();
    if (first && (first->seq < self->all_until_ || self->ready())) {
        schedule(&self->notify_cb_);
        return;
    }
    self->keepalive(false);  // may destroy self: last
}

void Linkable::wait_turn_slow(TimeoutArg timeout, const char* what) {
    if (timeout.zero()) return;
    ThreadState* ts = thread_state_fast();
    if (ts->hub && ts->current == ts->hub->greenlet) return;  // the hub is the one waking them
    // Owed its wake-up in this round even if the object is no longer ready by its turn.
    all_until_ = waiters_.next_seq() + 1;
    if (run_) run_->arrivals = true;
    park(waiters_, timeout, what);
}

LinkId Linkable::add_rawlink(std::function<void(Linkable&)> fn) {
    if (!fn) throw_empty_rawlink();
    check_thread("rawlink");
    auto node = std::make_unique<RawLink>();
    node->id = next_link_id.fetch_add(1, std::memory_order_relaxed);
    node->owner = this;
    node->fn = std::move(fn);
    node->on_wake = &RawLink::fire;
    node->on_abandon = [](WaitNode* w, const char*) noexcept { delete static_cast<RawLink*>(w); };
    RawLink* n = node.release();
    link(n);  // schedules a round at once if ready
    return n->id;
}

void Linkable::remove_rawlink(LinkId id) {
    check_thread("unlink");
    RawLink* found = nullptr;
    waiters_.for_each([&](WaitNode* n) {
        if (!found && n->on_wake == &RawLink::fire && static_cast<RawLink*>(n)->id == id)
            found = static_cast<RawLink*>(n);
    });
    if (!found) return;
    found->unlink();
    delete found;
}

void Linkable::throw_empty_rawlink() {
    throw std::invalid_argument("cogent: rawlink needs a callable");
}

void throw_self_join(const GreenletImpl* g, const char* what) {
    char buf[1024];
    g->describe(buf, sizeof buf);  // a greenlet describes itself by its name
    const std::string n = buf;
    throw GreenletError("cogent: " + n + " cannot join itself (" + n + "." + what +
                        "() called from inside " + n + " would wait for its own end forever)");
}

void check_wait_args(const std::vector<Linkable*>& objects, const char* what) {
    // Every object first, before any is linked: a refused call leaves them all as they were.
    const GreenletImpl* me = tls_core ? tls_core->current : nullptr;
    for (Linkable* o : objects) {
        o->check_thread(what);
        if (const GreenletImpl* g = o->as_greenlet(); g && g == me) throw_self_join(g, what);
    }
}

MultiWait::MultiWait(std::vector<Linkable*> objs, TimeoutArg timeout, const char* what)
    : nodes_(objs.size()), objects_(std::move(objs)), timeout_(timeout) {
    auto& objects = objects_;
    check_wait_args(objects, what);
    if (!timeout.forever()) deadline_ns_ = monotonic_ns() + std::uint64_t(timeout.value().count());
    for (std::size_t i = 0; i < objects.size(); ++i) {
        Node& n = nodes_[i];
        n.owner = this;
        n.index = i;
        n.on_wake = &MultiWait::on_ready;
        n.on_abandon = &MultiWait::on_abandon;
        if (objects[i]->ready()) {
            ready_.push_back(i);  // already ready: yielded first, in the given order
        } else {
            objects[i]->link(&n);
            if (objects[i]->readied_from_other_threads()) holds_loop_ = true;
        }
    }
    if (holds_loop_) hub_of(thread_state_fast())->keep_alive(+1);
}

MultiWait::~MultiWait() {
    for (auto& n : nodes_) n.unlink();
    if (holds_loop_) hub_of(thread_state_fast())->keep_alive(-1);
}

void MultiWait::on_ready(WaitNode* wn) {
    auto* n = static_cast<Node*>(wn);
    MultiWait* self = n->owner;
    self->ready_.push_back(n->index);
    bool wake = self->ready_.size() >= self->want_;
    if (self->urgent_ && self->urgent_(self->objects_[n->index])) {
        self->urgent_hit_ = true;
        wake = true;
    }
    if (wake)
        if (WaitNode* parked = self->self_.pop_front()) parked->on_wake(parked);
}

// One of the objects was destroyed while registered: the iteration fails with
// WaitableDestroyed, now if the iterating greenlet is parked (queued wake), else at its next
// wait. objects_[index] is never looked at again (its node is unlinked).
void MultiWait::on_abandon(WaitNode* wn, const char* kind) noexcept {
    auto* n = static_cast<Node*>(wn);
    MultiWait* self = n->owner;
    if (!self->destroyed_) self->destroyed_ = kind ? kind : "";
    abandon_all(self->self_, self->destroyed_);
}

// Park once on self_ until woken (true) or the overall deadline passes (false).
bool MultiWait::park_until_deadline(const char* what) {
    if (destroyed_) throw_destroyed(destroyed_, what, current());
    TimeoutArg left;
    if (!timeout_.forever()) {
        std::uint64_t now = monotonic_ns();
        if (now >= deadline_ns_) return false;
        left = TimeoutArg(Duration(deadline_ns_ - now));
    }
    return park(self_, left, what);
}

std::optional<std::size_t> MultiWait::next() {
    while (ready_.empty()) {
        if (yielded_ >= nodes_.size()) return std::nullopt;
        if (!park_until_deadline("iwait") && ready_.empty()) return std::nullopt;
    }
    return take();
}

std::optional<std::size_t> MultiWait::take() {
    if (ready_.empty()) return std::nullopt;
    std::size_t i = ready_.front();
    ready_.pop_front();
    ++yielded_;
    return i;
}

void MultiWait::gather(std::size_t n, bool (*urgent)(Linkable*)) {
    if (urgent)
        for (std::size_t i : ready_)
            if (urgent(objects_[i])) return;
    want_ = n;
    urgent_ = urgent;
    urgent_hit_ = false;
    struct Reset {
        MultiWait* m;
        ~Reset() {
            m->want_ = 1;
            m->urgent_ = nullptr;
        }
    } reset{this};
    while (ready_.size() < n && !urgent_hit_)
        if (!park_until_deadline("joinall")) break;
}

}  // namespace detail
}  // namespace cogent
