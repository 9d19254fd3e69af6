// Destroying a waitable while greenlets wait on it (issue 12): every waiter is woken with
// WaitableDestroyed naming the object and the wait, timed waiters do not come back at their
// deadline, killed waiters just die, and nothing touches the object afterwards (this file
// also runs under ASan, which reports any such access).
#include <chrono>
#include <cogent/async_result.hpp>
#include <cogent/event.hpp>
#include <cogent/lock.hpp>
#include <cogent/queue.hpp>
#include <cogent/semaphore.hpp>
#include <cogent/wait.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent::Greenlet;
using cogent::GreenletExit;
using cogent::TimeoutArg;
using cogent::WaitableDestroyed;

namespace {

// One kind of wait on one kind of object. `block` runs in the waiting greenlet; `destroy` in
// the test's (main) greenlet.
struct EventF {
    static constexpr const char* wait = "Event::wait";
    static constexpr const char* kind = "Event";
    std::unique_ptr<cogent::Event> o = std::make_unique<cogent::Event>();
    void block(TimeoutArg t) { o->wait(t); }
};
struct AsyncResultF {
    static constexpr const char* wait = "AsyncResult::get";
    static constexpr const char* kind = "AsyncResult";
    std::unique_ptr<cogent::AsyncResult<int>> o = std::make_unique<cogent::AsyncResult<int>>();
    void block(TimeoutArg t) { o->get(t); }
};
struct SemaphoreF {
    static constexpr const char* wait = "Semaphore::acquire";
    static constexpr const char* kind = "Semaphore";
    std::unique_ptr<cogent::Semaphore> o = std::make_unique<cogent::Semaphore>(0);
    void block(TimeoutArg t) { o->acquire(t); }
};
struct SemaphoreWaitF {
    static constexpr const char* wait = "Semaphore::wait";
    static constexpr const char* kind = "Semaphore";
    std::unique_ptr<cogent::Semaphore> o = std::make_unique<cogent::Semaphore>(0);
    void block(TimeoutArg t) { o->wait(t); }
};
struct BoundedF {
    static constexpr const char* wait = "BoundedSemaphore::acquire";
    static constexpr const char* kind = "BoundedSemaphore";
    std::unique_ptr<cogent::BoundedSemaphore> o = [] {
        auto s = std::make_unique<cogent::BoundedSemaphore>(1);
        s->acquire();
        return s;
    }();
    void block(TimeoutArg t) { o->acquire(t); }
};
struct LockF {
    static constexpr const char* wait = "Lock::acquire";
    static constexpr const char* kind = "Lock";
    std::unique_ptr<cogent::Lock> o = [] {
        auto l = std::make_unique<cogent::Lock>();
        l->acquire();
        return l;
    }();
    void block(TimeoutArg t) { o->acquire(t); }
};
struct RLockF {
    static constexpr const char* wait = "RLock::acquire";
    static constexpr const char* kind = "RLock";
    std::unique_ptr<cogent::RLock> o = [] {
        auto l = std::make_unique<cogent::RLock>();
        l->acquire();  // held by the test's greenlet
        return l;
    }();
    void block(TimeoutArg t) { o->acquire(t); }
};
// A Condition with its own RLock: that lock dies with it, so the waiter must not hold a guard
// on the condition (nothing to release afterwards).
struct ConditionF {
    static constexpr const char* wait = "Condition::wait";
    static constexpr const char* kind = "Condition";
    std::unique_ptr<cogent::Condition> o = std::make_unique<cogent::Condition>();
    void block(TimeoutArg t) {
        o->acquire();
        o->wait(t);
    }
};
// A Condition on a Lock that outlives it: the waiter takes the lock back before the error
// reaches it, so its guard stays correct.
struct ConditionOnLockF {
    static constexpr const char* wait = "Condition::wait";
    static constexpr const char* kind = "Condition";
    cogent::Lock lock;
    std::unique_ptr<cogent::Condition> o = std::make_unique<cogent::Condition>(lock);
    void block(TimeoutArg t) {
        std::lock_guard<cogent::Lock> g(lock);
        auto* c = o.get();
        try {
            c->wait(t);
        } catch (const WaitableDestroyed&) {
            CHECK(lock.locked());  // taken back, as on every path out of wait()
            throw;
        }
    }
    ~ConditionOnLockF() { CHECK_FALSE(lock.locked()); }
};
struct QueueGetF {
    static constexpr const char* wait = "Queue::get";
    static constexpr const char* kind = "Queue";
    std::unique_ptr<cogent::Queue<int>> o = std::make_unique<cogent::Queue<int>>();
    void block(TimeoutArg t) { o->get(t); }
};
struct QueuePutF {
    static constexpr const char* wait = "Queue::put";
    static constexpr const char* kind = "Queue";
    std::unique_ptr<cogent::Queue<std::string>> o = [] {
        auto q = std::make_unique<cogent::Queue<std::string>>(1);
        q->put("a long enough string to live on the heap, not in the SSO buffer");
        return q;
    }();
    void block(TimeoutArg t) { o->put("another string, long enough to be on the heap", t); }
};
struct QueueJoinF {
    static constexpr const char* wait = "Queue::join";
    static constexpr const char* kind = "Queue";
    std::unique_ptr<cogent::Queue<int>> o = [] {
        auto q = std::make_unique<cogent::Queue<int>>();
        q->put(1);
        return q;
    }();
    void block(TimeoutArg t) { o->join(t); }
};
struct ChannelGetF {
    static constexpr const char* wait = "Channel::get";
    static constexpr const char* kind = "Channel";
    std::unique_ptr<cogent::Channel<int>> o = std::make_unique<cogent::Channel<int>>();
    void block(TimeoutArg t) { o->get(t); }
};
struct ChannelPutF {
    static constexpr const char* wait = "Channel::put";
    static constexpr const char* kind = "Channel";
    std::unique_ptr<cogent::Channel<int>> o = std::make_unique<cogent::Channel<int>>();
    void block(TimeoutArg t) { o->put(7, t); }
};
struct IWaitF {
    static constexpr const char* wait = "iwait";
    static constexpr const char* kind = "Event";
    std::unique_ptr<cogent::Event> o = std::make_unique<cogent::Event>();
    cogent::Event other;  // never set: the iteration must not end on its own
    void block(TimeoutArg t) {
        for (auto* e : cogent::iwait(std::vector<cogent::Event*>{&other, o.get()}, t)) (void)e;
    }
};

// What became of a waiter.
struct Outcome {
    enum What { none, returned, destroyed, killed, other } what = none;
    std::string message;
};

template <class F>
Greenlet<void> spawn_waiter(F& f, TimeoutArg t, Outcome& out) {
    return cogent::spawn(cogent::SpawnOptions{.name = "waiter"}, [&f, t, &out] {
        try {
            f.block(t);
            out.what = Outcome::returned;
        } catch (const WaitableDestroyed& e) {
            out.what = Outcome::destroyed;
            out.message = e.what();
        } catch (const GreenletExit&) {
            out.what = Outcome::killed;
            throw;
        } catch (...) {
            out.what = Outcome::other;
        }
    });
}

template <class F>
std::string expected_message() {
    return std::string("cogent: ") + F::kind + " destroyed while waiter waited in " + F::wait;
}

#define ALL_WAITS                                                                          \
    EventF, AsyncResultF, SemaphoreF, SemaphoreWaitF, BoundedF, LockF, RLockF, ConditionF, \
        ConditionOnLockF, QueueGetF, QueuePutF, QueueJoinF, ChannelGetF, ChannelPutF, IWaitF

}  // namespace

TEST_CASE_TEMPLATE("destroying a waitable wakes a waiter with WaitableDestroyed", F, ALL_WAITS) {
    cogent_test::LeakCheck leak;
    F f;
    Outcome out;
    auto g = spawn_waiter(f, {}, out);
    cogent::sleep(0);  // parked now
    REQUIRE(out.what == Outcome::none);
    f.o.reset();
    // Destroying never switches: the waiter is woken at the hub's next turn.
    CHECK(out.what == Outcome::none);
    CHECK(g.join(5s));
    CHECK(out.what == Outcome::destroyed);
    CHECK(out.message == expected_message<F>());
}

TEST_CASE_TEMPLATE("a timed waiter of a destroyed waitable is woken at once, not at its deadline",
                   F, ALL_WAITS) {
    cogent_test::LeakCheck leak;
    auto start = std::chrono::steady_clock::now();
    {
        F f;
        Outcome out;
        auto g = spawn_waiter(f, TimeoutArg(300ms), out);
        cogent::sleep(0);
        REQUIRE(out.what == Outcome::none);
        f.o.reset();
        CHECK(g.join(5s));
        CHECK(out.what == Outcome::destroyed);
        CHECK(out.message == expected_message<F>());
        CHECK(cogent_test::ms_since(start) < 250);
    }
    // Past the deadline: the waiter's timer was disarmed and nothing fires on freed memory.
    cogent::sleep(400ms);
}

TEST_CASE_TEMPLATE("a waiter killed before its waitable is destroyed just dies", F, ALL_WAITS) {
    cogent_test::LeakCheck leak;
    F f;
    Outcome out;
    auto g = spawn_waiter(f, TimeoutArg(300ms), out);
    cogent::sleep(0);
    REQUIRE(out.what == Outcome::none);
    g.kill(GreenletExit(), false);  // queued: it unwinds after the destruction
    f.o.reset();
    CHECK(g.join(5s));
    CHECK(out.what == Outcome::killed);
    CHECK(g.successful());
    cogent::sleep(400ms);  // past its deadline
}

TEST_CASE_TEMPLATE("a waiter killed after its waitable is destroyed, before it is woken", F,
                   ALL_WAITS) {
    cogent_test::LeakCheck leak;
    F f;
    Outcome out;
    auto g = spawn_waiter(f, {}, out);
    cogent::sleep(0);
    REQUIRE(out.what == Outcome::none);
    f.o.reset();
    g.kill(GreenletExit(), false);  // queued behind the wake-up
    CHECK(g.join(5s));
    CHECK(out.what == Outcome::destroyed);
    CHECK(g.dead());
}

TEST_CASE("destroying a waitable wakes every waiter, each with its own wait's name") {
    cogent_test::LeakCheck leak;
    auto q = std::make_unique<cogent::Queue<int>>(1);
    q->put(1);
    q->get();
    q->task_done();
    q->put(2);  // full again, and one task unfinished
    std::vector<std::string> got;
    std::vector<Greenlet<void>> gs;
    auto add = [&](const char* name, auto fn) {
        gs.push_back(cogent::spawn(cogent::SpawnOptions{.name = name}, [&got, fn] {
            try {
                fn();
            } catch (const WaitableDestroyed& e) {
                got.push_back(e.what());
            }
        }));
    };
    add("p1", [&q] { q->put(3); });
    add("p2", [&q] { q->put(4, 10s); });
    add("j", [&q] { q->join(); });
    cogent::sleep(0);
    q.reset();
    for (auto& g : gs) CHECK(g.join(5s));
    REQUIRE(got.size() == 3);
    CHECK(got[0] == "cogent: Queue destroyed while j waited in Queue::join");
    CHECK(got[1] == "cogent: Queue destroyed while p1 waited in Queue::put");
    CHECK(got[2] == "cogent: Queue destroyed while p2 waited in Queue::put");
}

TEST_CASE("the main greenlet waiting on a waitable another greenlet destroys") {
    cogent_test::LeakCheck leak;
    auto ev = std::make_unique<cogent::Event>();
    auto g = cogent::spawn([&ev] { ev.reset(); });
    CHECK_THROWS_WITH_AS(ev->wait(),
                         "cogent: Event destroyed while <main greenlet> waited in "
                         "Event::wait",
                         WaitableDestroyed);
    CHECK(g.join(5s));
}

TEST_CASE("a semaphore destroyed under several timed acquirers") {
    // The report: the count was touched after the destruction by leaving waiters.
    cogent_test::LeakCheck leak;
    auto sem = std::make_unique<cogent::Semaphore>(0);
    int destroyed = 0;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 5; ++i)
        gs.push_back(cogent::spawn([&sem, &destroyed, i] {
            try {
                sem->acquire(std::chrono::milliseconds(20 * (i + 1)));
            } catch (const WaitableDestroyed&) {
                ++destroyed;
            }
        }));
    cogent::sleep(0);
    gs[1].kill(GreenletExit(), false);
    sem.reset();
    for (auto& g : gs) CHECK(g.join(5s));
    CHECK(destroyed == 4);
    cogent::sleep(150ms);
}

TEST_CASE("a Channel putter whose item was taken returns normally when the channel goes") {
    cogent_test::LeakCheck leak;
    auto ch = std::make_unique<cogent::Channel<int>>();
    bool delivered = false;
    auto putter = cogent::spawn([&] {
        ch->put(42);
        delivered = true;
    });
    cogent::sleep(0);
    CHECK(ch->get_nowait() == 42);  // the putter's wake-up is queued now
    ch.reset();
    CHECK(putter.join(5s));
    CHECK(putter.successful());
    CHECK(delivered);
}

TEST_CASE("WaitableDestroyed is a GreenletError") {
    WaitableDestroyed e("x");
    const cogent::GreenletError& base = e;
    CHECK(std::string(base.what()) == "x");
}
