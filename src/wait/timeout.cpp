// Timeout scopes: an ev_timer that throws into the greenlet that made it.
#include "cogent/timeout.hpp"

#include <atomic>
#include <cstdio>

#include "hub/hub.hpp"

namespace cogent {

using namespace detail;

static_assert(sizeof(ev_timer) <= 64, "Timeout::timer_ is too small for an ev_timer");

namespace {
std::atomic<std::uint64_t> g_next_id{1};

std::string message(const TimeoutArg& d) {
    if (d.forever()) return "Timeout";
    char buf[64];
    snprintf(buf, sizeof buf, "Timeout: %g seconds", d.seconds());
    return buf;
}
ev_timer* timer_of(unsigned char* storage) { return reinterpret_cast<ev_timer*>(storage); }
}  // namespace

Timeout::Timeout(TimeoutArg d, bool start_now)
    : BaseException(message(d)), id_(g_next_id.fetch_add(1, std::memory_order_relaxed)), duration_(d) {
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
    std::exception_ptr e = self->exception_ ? self->exception_ : std::make_exception_ptr(Timeout(*self));
    resume_throw(self->owner_, std::move(e));
}

void Timeout::start() {
    if (duration_.forever()) return;
    ThreadState* ts = thread_state_fast();
    if (owner_ && owner_ != ts->current)
        throw GreenletError("cogent: Timeout::start from a greenlet other than the one it "
                            "belongs to");
    cancel();
    HubImpl* hub = hub_of(ts);
    owner_ = ts->current;
    ev_timer* t = timer_of(timer_);
    ev_timer_init(t, [](struct ev_loop*, ev_timer* w, int) { on_fire(w->data); },
                  duration_.seconds(), 0.);
    t->data = this;
    hub->update_now();
    ev_timer_start(hub->loop, t);
    owns_timer_ = true;
}

void Timeout::cancel() noexcept {
    if (!owns_timer_) return;
    owns_timer_ = false;
    ev_timer* t = timer_of(timer_);
    HubImpl* hub = owner_ && owner_->thread ? owner_->thread->hub : nullptr;
    if (hub) ev_timer_stop(hub->loop, t);  // even if inactive: it may be expired and pending
}

bool Timeout::pending() const noexcept {
    return owns_timer_ && ev_is_active(reinterpret_cast<const ev_timer*>(timer_));
}

}  // namespace cogent
