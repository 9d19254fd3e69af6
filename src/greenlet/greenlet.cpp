// RawGreenlet and the gevent-style GreenletState.
#include "cogent/greenlet.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include "cogent/util.hpp"
#include "cogent/wait.hpp"
#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent {

using namespace detail;

// ---------------------------------------------------------------------------------------------
// RawGreenlet

namespace {
class RawImpl final : public GreenletImpl {
public:
    RawImpl(RawGreenlet::Function fn, GreenletImpl* parent, std::size_t size)
        : GreenletImpl(parent, size), fn_(std::move(fn)) {}
    void body() override {
        std::any arg = std::move(transfer);
        transfer.reset();
        auto fn = std::move(fn_);  // released when the body ends, not when the handle does
        transfer = fn(std::move(arg));
    }

private:
    RawGreenlet::Function fn_;
};
}  // namespace

RawGreenlet::RawGreenlet(Function run, RawGreenlet parent, std::size_t stack_size) {
    if (!run) throw std::invalid_argument("cogent: RawGreenlet needs a callable");
    p_ = Ref<GreenletImpl>(new RawImpl(std::move(run), parent.impl(), stack_size));
}

RawGreenlet RawGreenlet::current() { return from_impl(detail::current()); }

void RawGreenlet::null_handle(const char* what) {
    throw std::invalid_argument(std::string("cogent: ") + what + " on a null RawGreenlet");
}

std::any RawGreenlet::throw_exception(std::exception_ptr e) {
    if (!p_) throw std::invalid_argument("cogent: throw_exception on a null RawGreenlet");
    if (!e) throw std::invalid_argument("cogent: throw_exception needs an exception");
    return detail::throw_to(p_.get(), std::move(e));
}

void RawGreenlet::kill_now() {
    if (p_ && p_->started() && !p_->dead()) throw_exception(GreenletExit());
}

RawGreenlet RawGreenlet::parent() const {
    return p_ && p_->parent ? from_impl(p_->parent) : RawGreenlet();
}

void RawGreenlet::set_parent(const RawGreenlet& parent) {
    if (!p_ || !parent) throw std::invalid_argument("cogent: set_parent on a null RawGreenlet");
    detail::set_parent(p_.get(), parent.impl());
}

std::string RawGreenlet::describe() const {
    if (!p_) return "<null greenlet>";
    char buf[160];
    p_->describe(buf, sizeof buf);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// GreenletState

namespace detail {

namespace {

// Link and exit-hook ids: unique in the process and never reused, so a stale id names nothing.
// Each thread takes a block of ids at a time: no shared cache line per link.
std::atomic<std::uint64_t> next_id_block{0};
struct LinkIds {
    std::uint64_t next = 0, end = 0;
};
thread_local constinit LinkIds link_ids __attribute__((tls_model("initial-exec")));

LinkId new_link_id() noexcept {
    LinkIds& ids = link_ids;
    if (ids.next == ids.end) [[unlikely]] {
        constexpr std::uint64_t kBlock = std::uint64_t(1) << 16;
        ids.next = next_id_block.fetch_add(kBlock, std::memory_order_relaxed) + 1;  // never 0
        ids.end = ids.next + kBlock;
    }
    return ids.next++;
}

struct LinkNode : WaitNode {
    GreenletState* owner;
    std::function<void(AnyGreenlet)> fn;
    LinkId id;
    LinkKind kind;
    ~LinkNode() { unlink(); }
    static void wake(WaitNode* n);
};

// Runs on the hub, from the owner's notification (Linkable::run_notify), which takes one link
// at a time: gevent's Greenlet._notify_links. A link() callback gets a new greenlet that is
// switched to right here (gevent's SpawnedLink), so it runs up to its first block before the
// next link is taken, and may unlink later ones.
void LinkNode::wake(WaitNode* n) {
    std::unique_ptr<LinkNode> self(static_cast<LinkNode*>(n));
    const bool ok = !self->owner->error;
    if ((self->kind == LinkKind::link_value && !ok) ||
        (self->kind == LinkKind::link_exception && ok))
        return;
    try {
        AnyGreenlet g = AnyGreenlet::from_state(self->owner);
        if (self->kind == LinkKind::rawlink) {
            self->fn(g);
        } else {
            // Named after its owner, so that a failure reads "link callback of Greenlet-1
            // failed", not as a failure of some unknown Greenlet-2.
            char owner[160];
            self->owner->describe(owner, sizeof owner);
            auto runner =
                detail::make(SpawnOptions{.name = std::string("link callback of ") + owner},
                             [fn = std::move(self->fn), g]() mutable { fn(g); });
            runner.state()->scheduled = true;
            resume(runner.state());  // a started greenlet holds itself alive until it ends
        }
    } catch (...) {
        report_exception("a greenlet link callback", std::current_exception());
    }
}

// start_later's timer; it holds a reference on the greenlet until it fires or is dropped.
struct LaterTimer {
    loop::Timer timer;
    GreenletState* g;
};

// A kill on its way to a started greenlet: a hub callback that throws into it (gevent's _kill).
// One per kill() call, so that each kill lands; it holds a reference on the greenlet while
// queued and frees itself once run or discarded.
struct KillRequest : Callback {
    GreenletState* target;
    std::exception_ptr exc;
    // NOLINTNEXTLINE(bugprone-throw-keyword-missing): an exception_ptr handed on, not thrown
    KillRequest(GreenletState* victim, std::exception_ptr e) : target(victim), exc(std::move(e)) {
        fn = [](Callback* c) {
            std::unique_ptr<KillRequest> k(static_cast<KillRequest*>(c));
            GreenletState* g = k->target;
            if (!g->dead()) resume_throw(g, std::move(k->exc));
            g->release();  // the reference the queued kill held
        };
        discard = [](Callback* c) {
            std::unique_ptr<KillRequest> k(static_cast<KillRequest*>(c));
            k->target->release();
        };
    }
};
}  // namespace

struct GreenletState::ExitHook {
    std::function<void()> fn;
    ExitHook* next;
    LinkId id;
};

LinkId GreenletState::add_exit_hook(std::function<void()> fn) {
    if (!fn) throw std::invalid_argument("cogent: add_exit_hook needs a callable");
    if (thread != tls_state) throw GreenletError("cogent: add_exit_hook from another thread");
    exit_hooks_ = new ExitHook{std::move(fn), exit_hooks_, new_link_id()};
    return exit_hooks_->id;
}

void GreenletState::remove_exit_hook(LinkId id) noexcept {
    for (ExitHook** p = &exit_hooks_; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            ExitHook* h = *p;
            *p = h->next;
            delete h;
            return;
        }
    }
}

void GreenletState::run_exit_hooks() noexcept {
    while (ExitHook* h = exit_hooks_) {
        exit_hooks_ = h->next;
        try {
            h->fn();
        } catch (...) {
            report_exception("a greenlet exit hook", std::current_exception());
        }
        delete h;
    }
}

void GreenletState::set_name(std::string n) {
    if (n.empty())
        name_.reset();
    else
        name_ = std::make_unique<std::string>(std::move(n));
}

GreenletState::GreenletState(const SpawnOptions& opts)
    : GreenletImpl(hub_greenlet(), opts.stack_size) {
    if (!opts.name.empty()) name_ = std::make_unique<std::string>(opts.name);
    id_ = thread->next_id++;
    if (thread->current) spawned_by = thread->current->number();
    start_cb_.g = this;
    start_cb_.owns_ref = true;  // a spawned greenlet runs even if every handle is dropped
}

GreenletState::~GreenletState() {
    if (!waiters_.empty()) destroy_links();
    while (ExitHook* h = exit_hooks_) {  // never ran: the greenlet never ended
        exit_hooks_ = h->next;
        delete h;
    }
    if (later_) {
        delete static_cast<LaterTimer*>(later_);  // stops the timer, even an expired one
    }
}

void GreenletState::destroy_links() noexcept {
    // Links never fired (the greenlet never ended): free them.
    std::vector<LinkNode*> links;
    waiters_.for_each([&](WaitNode* n) {
        if (n->on_wake == &LinkNode::wake) links.push_back(static_cast<LinkNode*>(n));
    });
    for (auto* l : links) {
        l->unlink();
        delete l;
    }
}

std::string GreenletState::name() const {
    return name_ ? *name_ : "Greenlet-" + std::to_string(id_);
}

void GreenletState::describe(char* buf, std::size_t len) const noexcept {
    if (!name_)
        snprintf(buf, len, "Greenlet-%llu", (unsigned long long)id_);
    else
        snprintf(buf, len, "%s", name_->c_str());
}

void GreenletState::body() {
    try {
        invoke();
    } catch (const GreenletExit&) {
        exited = true;
    } catch (...) {
        error = std::current_exception();
        char buf[160];
        describe(buf, sizeof buf);
        std::string msg;
        try {
            msg = "cogent: " + std::string(buf) + " failed with " + describe_exception(error);
        } catch (...) {
        }
        report_error(ErrorKind::greenlet, buf, error, msg);
    }
    try {
        drop_fn();
    } catch (...) {
        report_exception("the destructor of a greenlet's function", std::current_exception());
    }
    run_exit_hooks();
    finish();
}

void GreenletState::finish() {
    // Dead from the waiters' point of view once the body is over; run_body sets the state.
    // The notification runs on the hub after this greenlet's final switch.
    notify();
}

void GreenletState::start() {
    check_thread("start");
    if (scheduled || dead()) return;
    scheduled = true;
    add_ref();
    schedule(&start_cb_);
}

void GreenletState::start_later(Duration d) {
    check_thread("start_later");
    if (scheduled || dead()) return;
    scheduled = true;
    auto* lt = new LaterTimer{};
    lt->g = this;
    later_ = lt;
    lt->timer.set_callback(
        [](loop::Timer& t) {
            auto* later = static_cast<LaterTimer*>(t.data());
            GreenletState* self = later->g;
            self->later_ = nullptr;
            delete later;
            resume(self);
            self->release();
        },
        lt);
    add_ref();  // held by the timer
    lt->timer.start(hub_of(thread)->loop(), d);
}

void GreenletState::kill(std::exception_ptr e, bool block, TimeoutArg timeout) {
    // Before anything: from another thread, the kill would be queued on the caller's hub and
    // jump onto this thread's greenlet stack.
    check_thread("kill");
    if (dead()) return;
    if (!started()) {
        // Killed before it ran: it never will. gevent: dead, and successful for GreenletExit.
        if (start_cb_.linked()) {
            start_cb_.unlink();
            release();
        }
        if (later_) {
            delete static_cast<LaterTimer*>(later_);  // stops the timer
            later_ = nullptr;
            release();
        }
        end_unstarted(std::move(e));
        return;
    }
    // Started: throw it in from the hub. Every kill gets its own request (gevent schedules one
    // _kill per call), so a second kill before the first lands raises a second time.
    auto* k = new KillRequest(this, std::move(e));
    add_ref();  // held by the queued request
    schedule(k);
    if (block) {
        ThreadState* ts = tls_state;
        if (ts && ts->hub && ts->current == ts->hub->greenlet) return;  // cannot wait on the hub
        wait_ready(timeout, "Greenlet::kill");
    }
}

void GreenletState::throw_self_join(const char* what) const { detail::throw_self_join(this, what); }

void GreenletState::end_unstarted(std::exception_ptr e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const GreenletExit&) {
        exited = true;
    } catch (...) {
        error = std::current_exception();
    }
    Ref<GreenletState> keep = Ref<GreenletState>::share(this);
    state = State::dead;
    try {
        drop_fn();
    } catch (...) {
    }
    notify();
}

namespace {
// std::bad_alloc with the greenlet's name; no allocation for its message.
class NoStack final : public std::bad_alloc {
public:
    NoStack(const char* name, const char* why) noexcept {
        snprintf(msg_, sizeof msg_, "cogent: %s could not start (no stack): %s", name, why);
    }
    const char* what() const noexcept override { return msg_; }

private:
    char msg_[256];
};
}  // namespace

void GreenletState::start_failed(std::exception_ptr& e) noexcept {
    // Run by the hub, which must carry on: the greenlet fails as if its function had thrown.
    char name[160];
    describe(name, sizeof name);
    std::exception_ptr err = e;
    try {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            err = std::make_exception_ptr(NoStack(name, x.what()));
        }
    } catch (...) {
        // No memory even for the message: the original exception stands.
    }
    const char* what = name;
    try {
        std::rethrow_exception(err);
    } catch (const std::exception& x) {
        what = x.what();
    } catch (...) {
    }
    report_error(ErrorKind::greenlet, name, err, what);
    end_unstarted(std::move(err));
}

void GreenletState::get_outcome(TimeoutArg timeout) {
    check_join("get");
    if (!wait_ready(timeout, "Greenlet::get")) throw Timeout::expired(timeout);
    if (error) std::rethrow_exception(error);
    if (exited) throw GreenletExit();
}

LinkId GreenletState::add_link(std::function<void(AnyGreenlet)> fn, LinkKind kind) {
    static constexpr const char* kNames[] = {"link", "link_value", "link_exception", "rawlink"};
    check_thread(kNames[static_cast<int>(kind) & 3]);
    if (!fn) throw std::invalid_argument("cogent: link needs a callable");
    auto n = std::make_unique<LinkNode>();
    n->owner = this;
    n->fn = std::move(fn);
    n->id = new_link_id();
    n->kind = kind;
    n->on_wake = &LinkNode::wake;
    const LinkId id = n->id;
    link(n.get());                   // GreenletError from another thread: n is freed
    static_cast<void>(n.release());  // owned by the wait list until it runs or is unlinked
    return id;
}

void GreenletState::remove_link(LinkId id) {
    check_thread("unlink");
    LinkNode* found = nullptr;
    waiters_.for_each([&](WaitNode* n) {
        if (n->on_wake == &LinkNode::wake && static_cast<LinkNode*>(n)->id == id)
            found = static_cast<LinkNode*>(n);
    });
    if (found) {
        found->unlink();
        delete found;
    }
}

}  // namespace detail
}  // namespace cogent
