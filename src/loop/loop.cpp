// loop::Loop over libev.
#include "loop/loop.hpp"

#include <ev.h>
#include <signal.h>

#include <stdexcept>

namespace cogent::loop {

namespace {
ev_async* async_of(unsigned char* storage) { return reinterpret_cast<ev_async*>(storage); }
}  // namespace

void Loop::on_async(struct ev_loop*, ev_async* w, int) {
    auto* self = static_cast<Loop*>(w->data);
    self->wake_fn_(self->wake_data_);
}

Loop::Loop(bool default_loop) : default_(default_loop) {
    static_assert(sizeof(ev_async) <= sizeof async_ && alignof(ev_async) <= 8,
                  "Loop::async_ is too small for an ev_async");
    if (default_loop) {
        // libev's default loop installs a SIGCHLD handler that reaps *any* child with
        // waitpid(-1), stealing exit statuses from the program's own waitpid() calls. Children
        // are waited for with pidfd instead, so put the program's SIGCHLD disposition back.
        struct sigaction prev {};
        sigaction(SIGCHLD, nullptr, &prev);
        loop_ = ev_default_loop(EVFLAG_AUTO);
        sigaction(SIGCHLD, &prev, nullptr);
    } else {
        loop_ = ev_loop_new(EVFLAG_AUTO);
    }
    if (!loop_) throw std::runtime_error("cogent: libev could not create an event loop");
    ev_async_init(async_of(async_), &Loop::on_async);
    async_of(async_)->data = this;
}

namespace {
void on_release(struct ev_loop* l) noexcept {
    if (auto* w = static_cast<Loop::PollWatch*>(ev_userdata(l)))
        w->sleeping.store(true, std::memory_order_relaxed);
}
void on_acquire(struct ev_loop* l) noexcept {
    if (auto* w = static_cast<Loop::PollWatch*>(ev_userdata(l))) {
        w->sleeping.store(false, std::memory_order_relaxed);
        w->polls.fetch_add(1, std::memory_order_relaxed);
    }
}
}  // namespace

void Loop::watch_polls(PollWatch* w) noexcept {
    ev_set_userdata(loop_, w);
    if (w) {
        ev_set_loop_release_cb(loop_, &on_release, &on_acquire);
        w->on.store(true, std::memory_order_release);
    } else {
        ev_set_loop_release_cb(loop_, nullptr, nullptr);
    }
}

Loop::~Loop() {
    ev_async* a = async_of(async_);
    if (ev_is_active(a)) {
        ev_ref(loop_);  // set_wakeup unreferenced it
        ev_async_stop(loop_, a);
    }
    if (!default_) ev_loop_destroy(loop_);
}

void Loop::run() { ev_run(loop_, 0); }
void Loop::run_nowait() { ev_run(loop_, EVRUN_NOWAIT); }
void Loop::break_one() noexcept { ev_break(loop_, EVBREAK_ONE); }
void Loop::break_all() noexcept { ev_break(loop_, EVBREAK_ALL); }
double Loop::now() const noexcept { return ev_now(loop_); }
void Loop::update_now() noexcept { ev_now_update(loop_); }
void Loop::ref() noexcept { ev_ref(loop_); }
void Loop::unref() noexcept { ev_unref(loop_); }
void Loop::fork() noexcept { ev_loop_fork(loop_); }

void Loop::set_wakeup(void (*fn)(void*), void* data) {
    wake_fn_ = fn;
    wake_data_ = data;
    ev_async* a = async_of(async_);
    if (ev_is_active(a)) return;
    ev_async_start(loop_, a);
    ev_unref(loop_);  // the cross-thread door alone does not keep the loop alive
}

void Loop::wake() noexcept { ev_async_send(loop_, async_of(async_)); }

}  // namespace cogent::loop
