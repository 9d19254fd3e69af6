// Timeout scopes: a timer on the hub's loop that throws into the greenlet that made it.
#include "cogent/timeout.hpp"

#include <atomic>
#include <cstdio>
#include <new>

#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent {

using namespace detail;

static_assert(sizeof(loop::Timer) <= 64 && alignof(loop::Timer) <= 8,
              "Timeout::timer_ is too small for a loop::Timer");

namespace {
std::atomic<std::uint64_t> g_next_id{1};

std::string message(const TimeoutArg& d) {
    if (d.forever()) return "Timeout";
    char buf[64];
    snprintf(buf, sizeof buf, "Timeout: %g seconds", d.seconds());
    return buf;
}
loop::Timer* timer_of(unsigned char* storage) {
    return std::launder(reinterpret_cast<loop::Timer*>(storage));
}
const loop::Timer* timer_of(const unsigned char* storage) {
    return std::launder(reinterpret_cast<const loop::Timer*>(storage));
}
}  // namespace

Timeout::Timeout(TimeoutArg d, bool start_now)
    : BaseException(message(d)),
      id_(g_next_id.fetch_add(1, std::memory_order_relaxed)),
      duration_(d) {
    if (start_now) start();
}

Timeout::Timeout(TimeoutArg d) : Timeout(d, true) {}

Timeout::Timeout(TimeoutArg d, std::exception_ptr e, int) : Timeout(d, false) {
    exception_ = std::move(e);
    start();
}

Timeout::Timeout(const Timeout& o)
    : BaseException(o), id_(o.id_), duration_(o.duration_), exception_(o.exception_) {}

Timeout::~Timeout() { cancel(); }

Timeout Timeout::expired(TimeoutArg d) { return Timeout(d, false); }

void Timeout::on_fire(void* p) {
    auto* self = static_cast<Timeout*>(p);
    std::exception_ptr e =
        self->exception_ ? self->exception_ : std::make_exception_ptr(Timeout(*self));
    resume_throw(self->owner_, std::move(e));
}

void Timeout::start() {
    if (duration_.forever()) return;
    ThreadState* ts = thread_state_fast();
    if (owner_ && owner_ != ts->current)
        throw GreenletError(
            "cogent: Timeout::start from a greenlet other than the one it "
            "belongs to");
    cancel();
    HubImpl* hub = hub_of(ts);
    owner_ = ts->current;
    auto* t = new (timer_) loop::Timer([](loop::Timer& w) { on_fire(w.data()); }, this);
    owns_timer_ = true;
    t->start(hub->loop(), duration_.value());
}

void Timeout::cancel() noexcept {
    if (!owns_timer_) return;
    owns_timer_ = false;
    HubImpl* hub = owner_ && owner_->thread ? owner_->thread->hub : nullptr;
    // Stops it, even if inactive: it may be expired and pending. With the hub gone, its loop
    // and the watchers on it are gone too: nothing to stop.
    if (hub) timer_of(timer_)->~Timer();
}

bool Timeout::pending() const noexcept { return owns_timer_ && timer_of(timer_)->active(); }

}  // namespace cogent
