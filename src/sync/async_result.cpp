#include "cogent/async_result.hpp"

#include <stdexcept>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"

namespace cogent::detail {

// A cross-thread wake-up queued on the owner hub outlives nothing: it reaches the AsyncResult
// through this block, which the destructor disconnects (both run on the owner thread).
struct AsyncResultBase::Remote {
    AsyncResultBase* target;
};

AsyncResultBase::AsyncResultBase() : Linkable(true), owner_(thread_state()), hub_(hub_of(owner_)) {
    set_kind("AsyncResult");
}

AsyncResultBase::~AsyncResultBase() {
    // A set() on another thread publishes the state before it is done with this object (it
    // still queues the wake-up): wait for it to leave.
    std::lock_guard<std::mutex> lk(mu_);
    if (remote_) remote_->target = nullptr;
}

void AsyncResultBase::begin_set() {
    unsigned char expected = kEmpty;
    if (!state_.compare_exchange_strong(expected, kSetting, std::memory_order_acquire))
        throw std::logic_error("cogent: AsyncResult is already set (it can be set only once)");
}

void AsyncResultBase::abort_set() noexcept { state_.store(kEmpty, std::memory_order_release); }

void AsyncResultBase::set_error(std::exception_ptr e) {
    if (!e)
        throw std::invalid_argument("cogent: AsyncResult::set_exception given a null exception");
    begin_set();
    error_ = std::move(e);
    finish_set(false);
}

void AsyncResultBase::finish_set(bool ok) {
    const unsigned char st = ok ? kValue : kError;
    if (tls_state == owner_) {
        state_.store(st, std::memory_order_release);
        notify();
        return;
    }
    // Another thread. Everything below runs under mu_, so the owner cannot destroy the object
    // (or exit, taking its hub along) until the wake-up is queued, even though it may see the
    // state, and return from get(), as soon as it is stored.
    std::lock_guard<std::mutex> lk(mu_);
    remote_ = std::make_shared<Remote>(Remote{this});
    state_.store(st, std::memory_order_release);
    hub_->run_threadsafe([r = remote_] {
        if (r->target) r->target->notify();
    });
}

void AsyncResultBase::check_owner(const char* what) const {
    if (!owned_by_this_thread()) [[unlikely]]
        throw GreenletError(std::string("cogent: ") + what +
                            " called from a thread other than the one that created the "
                            "AsyncResult (only set() may come from another thread)");
}

bool AsyncResultBase::wait_done(TimeoutArg timeout, const char* what, bool take_turn) {
    // A result once set may be read from any thread (documented, tested): the state is atomic
    // and never changes again.
    if (ready()) {
        if (take_turn && owned_by_this_thread()) wait_turn(timeout, what);
        return true;
    }
    check_owner(what);
    if (timeout.zero()) return false;
    // Hold the loop: a set() may come from another thread, which the loop cannot know about
    // (its async watcher is unreferenced), and LoopExit would otherwise be raised while the
    // result is still on its way.
    struct Hold {
        HubImpl* hub;
        explicit Hold(HubImpl* h) : hub(h) { hub->keep_alive(1); }
        ~Hold() { hub->keep_alive(-1); }
    } hold(hub_);
    return wait_ready(timeout, what);
}

}  // namespace cogent::detail
