// iwait / joinall / killall on top of the one wait mechanism.
#include "cogent/wait.hpp"

#include "runtime.hpp"

namespace cogent {

using namespace detail;

namespace detail {

MultiWait::MultiWait(std::vector<Linkable*> objs, TimeoutArg timeout)
    : nodes_(objs.size()), objects_(std::move(objs)), timeout_(timeout) {
    auto& objects = objects_;
    if (!timeout.forever())
        deadline_ns_ = monotonic_ns() + std::uint64_t(timeout.value().count());
    for (std::size_t i = 0; i < objects.size(); ++i) {
        Node& n = nodes_[i];
        n.owner = this;
        n.index = i;
        n.on_wake = &MultiWait::on_ready;
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

// Park once on self_ until woken (true) or the overall deadline passes (false).
bool MultiWait::park_until_deadline(const char* what) {
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

std::vector<AnyGreenlet> joinall(std::vector<AnyGreenlet> greenlets, TimeoutArg timeout,
                                 bool raise_error, std::optional<std::size_t> count) {
    for (const auto& g : greenlets)
        if (!g.valid()) throw std::invalid_argument("cogent: joinall given a null greenlet handle");
    const std::size_t need = count ? std::min(*count, greenlets.size()) : greenlets.size();
    std::vector<Linkable*> objects;
    objects.reserve(greenlets.size());
    for (const auto& g : greenlets) objects.push_back(g.state());
    MultiWait mw(std::move(objects), timeout);
    std::vector<AnyGreenlet> done;
    done.reserve(need);
    auto failed = [](Linkable* l) { return static_cast<bool>(static_cast<GreenletState*>(l)->error); };
    while (done.size() < need) {
        // Sleep until all that are still needed are done (or one failed, with raise_error).
        mw.gather(need - done.size(), raise_error ? +failed : nullptr);
        bool any = false;
        while (done.size() < need) {
            auto i = mw.take();
            if (!i) break;
            any = true;
            done.push_back(greenlets[*i]);
            if (raise_error && done.back().exception())
                std::rethrow_exception(done.back().exception());
        }
        if (!any) break;  // timed out
    }
    return done;
}

void killall_ptr(std::vector<AnyGreenlet> greenlets, std::exception_ptr exception, bool block,
                 TimeoutArg timeout) {
    for (auto& g : greenlets) {
        if (!g.valid()) throw std::invalid_argument("cogent: killall given a null greenlet handle");
        g.state()->kill(exception, false, {});
    }
    if (!block) return;
    std::size_t n = greenlets.size();
    auto done = joinall(std::move(greenlets), timeout);
    if (done.size() < n) throw Timeout::expired(timeout);
}

}  // namespace cogent
