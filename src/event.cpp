#include "cogent/event.hpp"

#include "runtime.hpp"

namespace cogent {

using namespace detail;

Event::Event() noexcept {
    release_cb_.self = this;
    release_cb_.fn = &Event::run_release;
}

Event::~Event() {
    release_cb_.unlink();
    if (releasing_alive_) *releasing_alive_ = false;
    while (WaitNode* n = releasing_.pop_front()) (void)n;
}

void Event::set() {
    check_thread();
    flag_ = true;
    if (waiters_.empty()) return;
    bind_thread();
    releasing_.splice_back(waiters_);
    if (!release_cb_.linked()) schedule(&release_cb_);
}

void Event::run_release(Callback* cb) {
    Event* self = static_cast<ReleaseCb*>(cb)->self;
    bool alive = true;
    self->releasing_alive_ = &alive;
    while (WaitNode* n = self->releasing_.pop_front()) {
        n->on_wake(n);
        if (!alive) return;  // a woken greenlet destroyed the event
    }
    self->releasing_alive_ = nullptr;
}

bool Event::wait(TimeoutArg timeout) {
    if (flag_) return true;
    bind_thread();
    // Woken means a set() happened while we waited: true even if cleared since.
    return park(waiters_, timeout, "Event::wait") || flag_;
}

}  // namespace cogent
