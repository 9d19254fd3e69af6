// The type-independent halves of the queues: waiting in Queue/LifoQueue/PriorityQueue, and the
// pairing of putters and getters in Channel.
#include "cogent/queue.hpp"

#include <limits>
#include <string>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"

namespace cogent::detail {

// ---------------------------------------------------------------------------------------------
// QueueCore

QueueCore::QueueCore(std::optional<std::size_t> maxsize)
    : maxsize_(maxsize ? *maxsize : std::numeric_limits<std::size_t>::max()),
      bounded_(maxsize.has_value()) {
    if (maxsize && *maxsize == 0)
        throw std::invalid_argument(
            "cogent: a Queue's maxsize must be at least 1 (std::nullopt means unbounded; use "
            "Channel<T> for a queue of size 0)");
}

// Why a getter that is resumed can take its item without checking again who else might: the
// hub callback that resumes it (Linkable::run_notify) switches into it at once, and it takes the
// item before it can yield. The callback checks ready() again before resuming the next getter,
// so a getter that left (timeout, kill) never had anything handed to it: the item stays queued.
void QueueCore::wait_get(bool block, TimeoutArg timeout, const char* what) {
    const bool may_block = block && !timeout.zero();
    if (size_ > 0 && !may_block) return;  // a call that does not wait takes what is there
    if (size_ == 0 && shutdown_) throw ShutDown();
    if (!may_block) throw Empty();
    bind_all();
    // Here either nothing is queued or earlier getters wait for what is: queue up behind them.
    // (If items are queued while getters wait, the wake-up callback is already scheduled: every
    // put schedules it when getters wait, and it only stops when the queue is empty.)
    Deadline deadline(timeout);
    for (;;) {
        const bool woke = park(getters_.list(), deadline.left(), what);
        if (woke && size_ > 0) return;
        if (size_ == 0 && shutdown_) throw ShutDown();
        if (!woke) throw Empty();
        // Woken with nothing to take: cannot happen (we are resumed only while ready()); wait on.
    }
}

void QueueCore::wait_put(bool block, TimeoutArg timeout, const char* what) {
    if (shutdown_) throw ShutDown();
    const bool may_block = block && !timeout.zero();
    if (size_ < maxsize_ && !may_block) return;
    if (!may_block) throw Full();
    bind_all();
    Deadline deadline(timeout);
    for (;;) {
        const bool woke = park(putters_.list(), deadline.left(), what);
        if (shutdown_) throw ShutDown();
        if (woke && size_ < maxsize_) return;
        if (!woke) throw Full();
    }
}

void QueueCore::discarded(std::size_t n) {
    unfinished_ -= n < unfinished_ ? n : unfinished_;
    if (unfinished_ == 0) joiners_.wake();
}

void QueueCore::begin_shutdown() {
    shutdown_ = true;
    getters_.wake();
    putters_.wake();
}

void QueueCore::bind_all() {
    getters_.bind();  // the one checked by every call
    putters_.bind();
    joiners_.bind();
}

void QueueCore::check_task_done() {
    getters_.check("Queue::task_done");
    if (unfinished_ == 0)
        throw std::invalid_argument("cogent: Queue::task_done() called too many times");
}

bool QueueCore::wait_join(TimeoutArg timeout) {
    getters_.check("Queue::join");
    if (unfinished_ == 0) return true;
    bind_all();
    return joiners_.wait_ready(timeout, "Queue::join");
}

// ---------------------------------------------------------------------------------------------
// ChannelCore
//
// A transfer needs both parties to agree, and either may be killed or time out while it waits.
// So the pairing happens in one hub callback: it resumes the getter, which moves the item out
// of the parked putter's frame, and as soon as the getter yields back it resumes the putter
// with the outcome. Nothing else (no timer, no kill callback) can run between the two, so a
// putter that returns normally delivered its item and one that times out did not.

ChannelCore::ChannelCore() noexcept {
    cb_.self = this;
    cb_.fn = &ChannelCore::run_matcher;
}

ChannelCore::~ChannelCore() {
    cb_.unlink();
    if (running_) *running_ = false;
    // Never leave slots pointing at our sentinels, and wake their greenlets (queued) with
    // WaitableDestroyed; they touch nothing of ours afterwards (their slots live in their own
    // frames). A putter whose outcome is already decided (item taken, or shut down) is woken
    // normally instead and returns (or throws ShutDown) as it would have.
    while (Slot* s = getters_.pop_front()) abandon_all(s->parked, "Channel");
    while (Slot* s = putters_.pop_front()) abandon_all(s->parked, "Channel");
    while (Slot* s = done_.pop_front()) {
        const bool decided = s->state == SlotState::taken || s->state == SlotState::shut;
        abandon_all(s->parked, decided ? nullptr : "Channel");
    }
}

void ChannelCore::check_thread() const {
    if (owner_ && owner_ != tls_state)
        throw GreenletError(
            "cogent: a Channel is used from two threads; it belongs to the thread whose "
            "greenlets wait on it");
}

bool ChannelCore::park_slot(List<Slot>& list, Slot& s, const Deadline& deadline, const char* what) {
    check_may_block(what);
    if (!owner_) owner_ = thread_state_fast();
    s.state = SlotState::waiting;
    s.peer = nullptr;
    list.push_back(&s);
    kick();
    const bool woke = park(s.parked, deadline.left(), what);
    s.unlink();  // still linked if it timed out
    return woke;
}

ChannelCore::Slot* ChannelCore::claim_putter() { return putters_.pop_front(); }

void ChannelCore::settle_claim(Slot* p, bool ok) {
    p->state = ok ? SlotState::taken : SlotState::failed;
    done_.push_back(p);
    kick();
}

bool ChannelCore::nowait_put_ok() const noexcept {
    if (getters_.empty()) return false;
    return getters_.size() > held_ + putters_.size();
}

void ChannelCore::kick() {
    // While the matcher runs it looks at the lists again after every wake-up: no need to
    // schedule it again.
    if (cb_.linked() || running_ != nullptr) return;
    const bool work =
        !done_.empty() || (!getters_.empty() && (held_ > 0 || !putters_.empty() || shutdown_));
    if (work) schedule(&cb_);
}

void ChannelCore::begin_shutdown() {
    shutdown_ = true;
    while (Slot* p = putters_.pop_front()) {
        p->state = SlotState::shut;
        done_.push_back(p);
    }
    kick();
}

void ChannelCore::wake(Slot* s) {
    if (WaitNode* n = s->parked.pop_front()) n->on_wake(n);
}

void ChannelCore::run_matcher(Callback* cb) {
    ChannelCore* self = static_cast<MatchCb*>(cb)->self;
    bool alive = true;
    self->running_ = &alive;
    for (;;) {
        if (Slot* d = self->done_.pop_front()) {
            wake(d);
            if (!alive) return;
            continue;
        }
        Slot* g = self->getters_.front();
        if (!g) break;
        if (self->held_ > 0) {
            self->getters_.pop_front();
            g->state = SlotState::held;
            wake(g);
            if (!alive) return;
            continue;
        }
        if (Slot* p = self->putters_.pop_front()) {
            self->getters_.pop_front();
            g->state = SlotState::offered;
            g->peer = p;
            wake(g);  // moves the item out and sets p->state (taken, or failed if the move threw)
            if (p->state != SlotState::taken)
                p->state = alive ? SlotState::failed : SlotState::shut;
            wake(p);
            if (!alive) return;
            continue;
        }
        if (self->shutdown_) {
            self->getters_.pop_front();
            g->state = SlotState::shut;
            wake(g);
            if (!alive) return;
            continue;
        }
        break;
    }
    self->running_ = nullptr;
}

}  // namespace cogent::detail
