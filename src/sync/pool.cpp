// Group and Pool: membership through rawlinks, kill/join, and the slot counter.
#include "cogent/pool.hpp"

#include <cstdint>
#include <string>

#include "cogent/hub.hpp"

namespace cogent {

namespace {
detail::GreenletImpl* key_of(const AnyGreenlet& g) noexcept {
    return static_cast<detail::GreenletImpl*>(g.state());
}
bool on_hub() { return detail::current() == detail::hub_greenlet(); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// Group

Group::Group() { empty_.set(); }

Group::~Group() {
    for (auto& m : members_) m.g.unlink(m.link);
}

bool Group::contains(const AnyGreenlet& g) const noexcept {
    return g.valid() && index_.count(key_of(g)) != 0;
}

bool Group::contains_current() const noexcept { return index_.count(detail::current()) != 0; }

std::vector<AnyGreenlet> Group::greenlets() const {
    empty_.check_thread("Group::greenlets");
    std::vector<AnyGreenlet> out;
    out.reserve(members_.size());
    for (const auto& m : members_) out.push_back(m.g);
    return out;
}

bool Group::add_member(const AnyGreenlet& g, bool blocking, TimeoutArg timeout) {
    empty_.check_thread("Group::add");
    if (g.valid()) g.state()->check_thread("add to a Group");
    if (!g.valid()) throw std::invalid_argument("cogent: Group::add given a null greenlet handle");
    if (contains(g)) return true;  // never two slots for one greenlet
    if (!reserve(blocking, timeout)) return false;
    if (contains(g)) {  // added by someone else while we waited for the slot
        unreserve();
        return true;
    }
    adopt(g);
    return true;
}

void Group::adopt(const AnyGreenlet& g) {
    try {
        members_.push_back(Member{g, 0, false});
    } catch (...) {
        unreserve();
        throw;
    }
    auto it = std::prev(members_.end());
    try {
        index_.emplace(key_of(g), it);
    } catch (...) {
        members_.erase(it);
        unreserve();
        throw;
    }
    try {
        // Runs on the hub right after the death, before any greenlet that joins it wakes: a
        // joiner always sees the group without the greenlet it waited for.
        it->link = it->g.rawlink([this](AnyGreenlet dead) { on_death(key_of(dead)); });
    } catch (...) {
        erase(it);
        throw;
    }
    update_empty();
}

void Group::update_empty() noexcept {
    if (members_.empty() && queued_ == 0)
        empty_.set();
    else
        empty_.clear();
}

void Group::erase(Members::iterator it) noexcept {
    index_.erase(key_of(it->g));
    members_.erase(it);
    unreserve();  // first: a queued task takes the slot before joiners see an empty group
    update_empty();
}

void Group::on_death(detail::GreenletImpl* key) noexcept {
    auto f = index_.find(key);
    if (f != index_.end()) erase(f->second);  // the link that called us is already gone
}

void Group::discard(const AnyGreenlet& g) {
    empty_.check_thread("Group::discard");
    if (!g.valid()) return;
    auto f = index_.find(key_of(g));
    if (f == index_.end()) return;
    auto it = f->second;
    it->g.unlink(it->link);
    erase(it);
}

bool Group::join(TimeoutArg timeout, bool raise_error) {
    empty_.check_thread("Group::join");
    if (!raise_error) return empty_.wait_ready(timeout, "Group::join");
    detail::Deadline dl(timeout);
    std::exception_ptr first;
    std::vector<AnyGreenlet> snapshot = greenlets();
    if (!snapshot.empty()) {
        IWait<AnyGreenlet> it(std::move(snapshot), timeout);
        while (auto g = it.next())
            if (!first && g->exception()) first = g->exception();
    }
    bool empty = empty_.wait_ready(dl.left(), "Group::join");
    if (first) std::rethrow_exception(first);
    return empty;
}

void Group::kill_ptr(std::exception_ptr e, bool block, TimeoutArg timeout) {
    empty_.check_thread("Group::kill");
    detail::Deadline dl(timeout);
    if (block && on_hub()) block = false;
    for (;;) {
        drop_queued(e);
        std::vector<AnyGreenlet> victims;
        for (auto& m : members_) {
            if (!m.dying) {
                m.dying = true;
                victims.push_back(m.g);
            }
        }
        for (auto& v : victims) v.state()->kill(e, false, {});
        if (!block || members_.empty()) return;
        std::vector<AnyGreenlet> alive;
        // A member killing its own group is not joined (a self-join): its kill lands on it
        // while it waits for the others.
        for (auto& m : members_)
            if (!m.g.dead() && m.g.state() != detail::current()) alive.push_back(m.g);
        TimeoutArg left = dl.left();
        if (left.zero()) return;
        if (alive.empty()) {
            // Only dead members whose removal is queued on the hub: let it run.
            sleep(Duration::zero());
            continue;
        }
        if (joinall(alive, left).size() < alive.size()) return;  // timed out
    }
}

void Group::killone_ptr(const AnyGreenlet& g, std::exception_ptr e, bool block,
                        TimeoutArg timeout) {
    empty_.check_thread("Group::killone");
    if (!g.valid()) return;
    auto f = index_.find(key_of(g));
    if (f == index_.end() || f->second->dying) return;
    f->second->dying = true;
    // A copy: g may be the group's own handle, which the kill can drop (an unstarted member).
    AnyGreenlet victim = g;  // NOLINT(performance-unnecessary-copy-initialization)
    victim.state()->kill(std::move(e), false, {});
    // Not join(): a member killing itself waits here for its own kill to land (no self-join).
    if (block && !on_hub()) victim.state()->wait_ready(timeout, "Group::killone");
}

// ---------------------------------------------------------------------------------------------
// Pool

Pool::Pool(std::size_t size) : capacity_(size) {
    if (size > std::size_t(PTRDIFF_MAX))
        throw std::invalid_argument("cogent: a Pool's size must not be negative (got " +
                                    std::to_string(static_cast<std::ptrdiff_t>(size)) + ")");
    slots_.free = size;
}

Pool::~Pool() { drop_queued(std::make_exception_ptr(GreenletExit())); }

bool Pool::reserve(bool blocking, TimeoutArg timeout) {
    // FIFO: nobody takes a free slot past a greenlet already waiting for one.
    if (slots_.free > 0 && !slots_.has_waiters()) {
        --slots_.free;
        return true;
    }
    if (!blocking) return false;
    detail::Deadline dl(timeout);
    for (;;) {
        TimeoutArg left = dl.left();
        if (left.zero()) return false;
        // Woken only while a slot is free, and resumed at once by the notifier: nobody can
        // take the slot between the wake-up and the decrement below. When we stop waiting
        // (timeout, kill) without being woken, the notifier simply skips us: nothing is lost.
        bool woken = slots_.park(left, "Pool::add");
        if (slots_.free > 0 && (woken || !slots_.has_waiters())) {
            --slots_.free;
            return true;
        }
        if (!woken) return false;
    }
}

void Pool::unreserve() noexcept {
    ++slots_.free;
    slots_.notify();
}

bool Pool::queue_task(const AnyGreenlet& task) {
    auto node = std::make_unique<QueuedTask>();
    node->pool = this;
    node->task = task;
    node->on_wake = &QueuedTask::wake;
    ++queued_;
    update_empty();
    slots_.link(node.release());  // woken at once (on the hub) if a slot is already free
    return true;
}

void Pool::QueuedTask::wake(detail::WaitNode* n) noexcept {
    // Runs on the hub, unlinked, while a slot is free.
    std::unique_ptr<QueuedTask> self(static_cast<QueuedTask*>(n));
    Pool* pool = self->pool;
    --pool->queued_;
    if (self->task.dead()) {  // killed while queued: it takes no slot
        pool->update_empty();
        return;
    }
    --pool->slots_.free;
    try {
        pool->adopt(self->task);  // gives the slot back if it throws
        self->task.start();
    } catch (...) {
        // Out of memory: fail the task rather than leave its joiners waiting forever.
        try {
            self->task.state()->kill(std::current_exception(), false, {});
        } catch (...) {
        }
        pool->update_empty();
    }
}

void Pool::drop_queued(std::exception_ptr e) noexcept {
    std::vector<QueuedTask*> nodes;
    try {
        slots_.for_each_waiter([&](detail::WaitNode* w) {
            if (w->on_wake == &QueuedTask::wake) nodes.push_back(static_cast<QueuedTask*>(w));
        });
    } catch (...) {
    }
    for (QueuedTask* n : nodes) {
        n->unlink();
        --queued_;
        try {
            n->task.state()->kill(e, false, {});  // unstarted: it dies at once and never runs
        } catch (...) {
        }
        delete n;
    }
    if (!nodes.empty()) update_empty();
}

int Pool::wait_available(TimeoutArg timeout) {
    slots_.check_thread("Pool::wait_available");
    if (slots_.free == 0 && !timeout.zero()) slots_.wait_ready(timeout, "Pool::wait_available");
    return static_cast<int>(slots_.free);
}

}  // namespace cogent
