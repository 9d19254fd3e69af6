// iwait / joinall / killall on top of the one wait mechanism.
#include "cogent/wait.hpp"

#include "runtime.hpp"

namespace cogent {

using namespace detail;

namespace detail {

MultiWait::MultiWait(std::vector<Linkable*> objects, TimeoutArg timeout)
    : nodes_(objects.size()), timeout_(timeout) {
    if (!timeout.forever())
        deadline_ns_ = monotonic_ns() + std::uint64_t(timeout.value().count());
    for (std::size_t i = 0; i < objects.size(); ++i) {
        Node& n = nodes_[i];
        n.owner = this;
        n.index = i;
        n.on_wake = &MultiWait::on_ready;
        if (objects[i]->ready())
            ready_.push_back(i);  // already ready: yielded first, in the given order
        else
            objects[i]->link(&n);
    }
}

MultiWait::~MultiWait() {
    for (auto& n : nodes_) n.unlink();
}

void MultiWait::on_ready(WaitNode* wn) {
    auto* n = static_cast<Node*>(wn);
    MultiWait* self = n->owner;
    self->ready_.push_back(n->index);
    if (WaitNode* parked = self->self_.pop_front()) parked->on_wake(parked);
}

std::optional<std::size_t> MultiWait::next() {
    while (ready_.empty()) {
        if (yielded_ >= nodes_.size()) return std::nullopt;
        TimeoutArg left;
        if (!timeout_.forever()) {
            std::uint64_t now = monotonic_ns();
            left = now >= deadline_ns_ ? TimeoutArg(Duration::zero())
                                       : TimeoutArg(Duration(deadline_ns_ - now));
            if (left.zero()) return std::nullopt;
        }
        if (!park(self_, left, "iwait") && ready_.empty()) return std::nullopt;
    }
    std::size_t i = ready_.front();
    ready_.pop_front();
    ++yielded_;
    return i;
}

}  // namespace detail

std::vector<AnyGreenlet> joinall(std::vector<AnyGreenlet> greenlets, TimeoutArg timeout,
                                 bool raise_error, std::optional<std::size_t> count) {
    for (const auto& g : greenlets)
        if (!g.valid()) throw std::invalid_argument("cogent: joinall given a null greenlet handle");
    IWait<AnyGreenlet> it(std::move(greenlets), timeout, count);
    std::vector<AnyGreenlet> done;
    while (auto g = it.next()) {
        done.push_back(*g);
        if (raise_error && g->exception()) std::rethrow_exception(g->exception());
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
