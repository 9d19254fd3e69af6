// joinall, killall, iwait/wait (over greenlets and Events), and Event itself.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::AnyGreenlet;
using cogent::Event;
using cogent::Greenlet;
using cogent::GreenletExit;
using cogent::Timeout;
using Clock = std::chrono::steady_clock;

namespace {

// A greenlet that sleeps `ms` milliseconds and returns ms.
Greenlet<int> sleeper(int ms) {
    return cogent::spawn([ms] {
        cogent::sleep(std::chrono::milliseconds(ms));
        return ms;
    });
}

// Silences fd 2 (expected failure reports) for its lifetime.
class QuietStderr {
public:
    QuietStderr() {
        std::fflush(stderr);
        saved_ = dup(2);
        FILE* devnull = std::fopen("/dev/null", "w");
        dup2(fileno(devnull), 2);
        std::fclose(devnull);
    }
    ~QuietStderr() {
        std::fflush(stderr);
        dup2(saved_, 2);
        close(saved_);
    }

private:
    int saved_;
};

// Adapters for the contract every waitable honours (TEST_CASE_TEMPLATE below).
struct EventWaitable {
    Event ev;
    bool wait(cogent::TimeoutArg t) { return ev.wait(t); }
    void make_ready() { ev.set(); }
};

struct JoinWaitable {
    Event gate;
    Greenlet<void> g = cogent::spawn([this] { gate.wait(); });
    bool wait(cogent::TimeoutArg t) { return g.join(t); }
    void make_ready() { gate.set(); }
    ~JoinWaitable() { g.kill(); }
};

struct IWaitWaitable {
    Event ev;
    bool wait(cogent::TimeoutArg t) { return cogent::wait(std::vector<Event*>{&ev}, t).size() == 1; }
    void make_ready() { ev.set(); }
};

}  // namespace

TEST_SUITE("wait") {

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "joinall returns the greenlets in completion order") {
    auto a = sleeper(30), b = sleeper(10), c = sleeper(20);
    auto done = cogent::joinall({a, b, c});
    REQUIRE(done.size() == 3);
    CHECK(done[0] == b);
    CHECK(done[1] == c);
    CHECK(done[2] == a);
    CHECK(a.dead());
    // Already dead ones come back at once, in the given order.
    auto again = cogent::joinall(std::vector<Greenlet<int>>{c, a, b});
    REQUIRE(again.size() == 3);
    CHECK(again[0] == c);
    CHECK(again[1] == a);
    CHECK(again[2] == b);
    CHECK(cogent::joinall(std::vector<AnyGreenlet>{}).empty());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "joinall on timeout returns the partial list without throwing") {
    auto fast = sleeper(5);
    Event never;
    auto slow = cogent::spawn([&] { never.wait(); });
    auto t0 = Clock::now();
    std::vector<AnyGreenlet> done;
    CHECK_NOTHROW(done = cogent::joinall({fast, slow}, 50ms));
    double ms = ms_since(t0);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == fast);
    CHECK(ms >= 50.0);
    CHECK(ms < 2000.0);
    CHECK_FALSE(slow.dead());
    // Zero: do not block.
    CHECK(cogent::joinall({slow}, 0s).empty());
    slow.kill();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "joinall raise_error rethrows the first failure; without it, nothing is thrown") {
    QuietStderr quiet;
    auto ok = sleeper(20);
    auto bad = cogent::spawn([]() -> int {
        cogent::sleep(5ms);
        throw std::runtime_error("joinall failure");
    });
    std::string msg;
    try {
        cogent::joinall({ok, bad}, {}, true);
    } catch (const std::runtime_error& e) {
        msg = e.what();
    }
    CHECK(msg == "joinall failure");
    CHECK_FALSE(ok.dead());  // raised as soon as the failure was seen
    std::vector<AnyGreenlet> all;
    CHECK_NOTHROW(all = cogent::joinall({ok, bad}));
    CHECK(all.size() == 2);
    // A killed greenlet is a success for raise_error.
    auto k = cogent::spawn([] { cogent::sleep(10s); });
    cogent::sleep(0);
    k.kill(GreenletExit(), false);
    CHECK_NOTHROW(cogent::joinall({k}, {}, true));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "joinall count stops after that many") {
    auto a = sleeper(40), b = sleeper(5), c = sleeper(15);
    auto done = cogent::joinall({a, b, c}, {}, false, 2);
    REQUIRE(done.size() == 2);
    CHECK(done[0] == b);
    CHECK(done[1] == c);
    CHECK_FALSE(a.dead());
    a.join();
    CHECK_THROWS_AS(cogent::joinall({AnyGreenlet{}}), std::invalid_argument);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "killall kills every greenlet and runs their destructors") {
    int unwound = 0;
    struct Count {
        int* n;
        ~Count() { ++*n; }
    };
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 4; ++i)
        gs.push_back(cogent::spawn([&unwound] {
            Count c{&unwound};
            cogent::sleep(10s);
        }));
    cogent::sleep(0);
    auto unstarted = cogent::spawn([] {});  // killed before it runs
    gs.push_back(unstarted);
    cogent::killall(gs);
    CHECK(unwound == 4);
    for (auto& g : gs) {
        CHECK(g.dead());
        CHECK(g.killed());
        CHECK(g.successful());
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "killall with a custom exception and without blocking") {
    QuietStderr quiet;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i) gs.push_back(cogent::spawn([] { cogent::sleep(10s); }));
    cogent::sleep(0);
    cogent::killall(gs, std::logic_error("stop"), false);
    for (auto& g : gs) CHECK_FALSE(g.dead());  // not blocking: not dead yet
    cogent::joinall(gs);
    for (auto& g : gs) {
        CHECK(g.dead());
        CHECK_FALSE(g.successful());
        CHECK_THROWS_AS(g.get(), std::logic_error);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "killall's timeout throws Timeout, unlike kill") {
    Event release;
    auto stubborn = cogent::spawn([&] {
        try {
            cogent::sleep(10s);
        } catch (const GreenletExit&) {
        }
        release.wait();
    });
    auto normal = cogent::spawn([] { cogent::sleep(10s); });
    cogent::sleep(0);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(cogent::killall(std::vector<AnyGreenlet>{stubborn, normal}, GreenletExit(), true, 30ms),
                    Timeout);
    CHECK(ms_since(t0) >= 30.0);
    CHECK(normal.dead());
    CHECK_FALSE(stubborn.dead());
    release.set();
    stubborn.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "iwait and wait over greenlets yield in completion order") {
    auto a = sleeper(30), b = sleeper(10), c = sleeper(20);
    std::vector<int> order;
    for (const auto& g : cogent::iwait(std::vector<Greenlet<int>>{a, b, c})) order.push_back(Greenlet<int>(g).get());
    CHECK(order == std::vector<int>{10, 20, 30});

    auto d = sleeper(15), e = sleeper(1);
    auto ready = cogent::wait(std::vector<AnyGreenlet>{d, e}, {}, 1);
    REQUIRE(ready.size() == 1);
    CHECK(ready[0] == e);
    CHECK_FALSE(d.dead());
    auto rest = cogent::wait(std::vector<AnyGreenlet>{d, e});
    CHECK(rest.size() == 2);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "iwait and wait over Event pointers") {
    Event e0, e1, e2;
    auto setter = cogent::spawn([&] {
        cogent::sleep(5ms);
        e2.set();
        cogent::sleep(5ms);
        e0.set();
        cogent::sleep(5ms);
        e1.set();
    });
    std::vector<Event*> evs{&e0, &e1, &e2};
    std::vector<Event*> order;
    auto it = cogent::iwait(evs);
    while (auto e = it.next()) order.push_back(*e);
    CHECK(order == std::vector<Event*>{&e2, &e0, &e1});
    setter.join();

    // wait with a timeout: only those ready in time.
    Event f0, f1;
    f1.set();
    auto t0 = Clock::now();
    auto got = cogent::wait(std::vector<Event*>{&f0, &f1}, 20ms);
    CHECK(ms_since(t0) >= 20.0);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == &f1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "iwait over a mix: timeout ends the iteration, nothing stays registered") {
    Event never;
    auto g = sleeper(5);
    {
        auto it = cogent::iwait(std::vector<Event*>{&never}, 10ms);
        CHECK_FALSE(it.next().has_value());
    }
    {
        // Registered, then abandoned before anything became ready.
        auto it = cogent::iwait(std::vector<AnyGreenlet>{g});
    }
    g.join();
    never.set();  // no stale registration may be woken
    cogent::sleep(0);
    CHECK(never.is_set());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Event set, clear, is_set and wait(timeout)") {
    Event ev;
    CHECK_FALSE(ev.is_set());
    CHECK_FALSE(ev.ready());
    auto t0 = Clock::now();
    CHECK_FALSE(ev.wait(20ms));
    CHECK(ms_since(t0) >= 20.0);
    CHECK_FALSE(ev.wait(0s));
    ev.set();
    CHECK(ev.is_set());
    // Already set: returns at once without yielding.
    bool ran = false;
    auto g = cogent::spawn([&] { ran = true; });
    CHECK(ev.wait());
    CHECK(ev.wait(0s));
    CHECK_FALSE(ran);
    ev.clear();
    CHECK_FALSE(ev.is_set());
    CHECK_FALSE(ev.wait(10ms));
    CHECK(ran);

    auto setter = cogent::spawn([&] {
        cogent::sleep(10ms);
        ev.set();
    });
    CHECK(ev.wait(5s));
    setter.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Event set never switches; waiters wake in FIFO order") {
    Event ev;
    std::vector<int> order;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 6; ++i)
        gs.push_back(cogent::spawn([&order, &ev, i] {
            ev.wait();
            order.push_back(i);
        }));
    cogent::sleep(0);  // all parked, in spawn order
    CHECK(order.empty());
    ev.set();
    CHECK(order.empty());  // woken later, on the hub, not from set()
    cogent::joinall(gs);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Event set then clear before the waiters run still wakes them (true)") {
    // gevent (bpo-13502): a waiter that was waiting when set() was called wakes and returns
    // true, even if clear() follows before it gets to run.
    Event ev;
    std::vector<int> results;
    auto t0 = Clock::now();
    auto a = cogent::spawn([&] { results.push_back(ev.wait(2s) ? 1 : 0); });
    auto b = cogent::spawn([&] { results.push_back(ev.wait(2s) ? 1 : 0); });
    cogent::sleep(0);
    ev.set();
    ev.clear();
    cogent::joinall({a, b});
    CHECK(results == std::vector<int>{1, 1});
    CHECK(ms_since(t0) < 1000.0);  // woken by set(), not by the 2 s timeout
    CHECK_FALSE(ev.is_set());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "zero timeouts never block on ready objects") {
    Event ev;
    ev.set();
    {
        Timeout t(0s);
        CHECK(ev.wait());  // ready: no blocking, so the zero Timeout has nowhere to fire
    }
    auto g = cogent::spawn([] { return 1; });
    g.join();
    CHECK_NOTHROW(cogent::killall(std::vector<AnyGreenlet>{g}, GreenletExit(), true, 0s));
    CHECK(cogent::joinall({g}, 0s).size() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a waiter that timed out or was killed is not woken later") {
    Event ev;
    bool late = false;
    auto timed = cogent::spawn([&] {
        bool r = ev.wait(5ms);
        cogent::sleep(30ms);
        late = r;
    });
    bool unwound = false;
    struct Flag {
        bool* f;
        ~Flag() { *f = true; }
    };
    auto killed = cogent::spawn([&] {
        Flag fl{&unwound};
        ev.wait();
    });
    cogent::sleep(10ms);
    killed.kill();
    CHECK(unwound);
    ev.set();  // neither the timed-out nor the killed waiter may be resumed by this
    cogent::joinall({timed, killed});
    CHECK_FALSE(late);
    CHECK(timed.successful());
}

TEST_CASE_TEMPLATE("waitable contract: timeout, kill while waiting, FIFO wake order", W, EventWaitable,
                   JoinWaitable, IWaitWaitable) {
    cogent_test::LeakCheck leak_check;
    {
        W w;
        // Timeout: false, not before the deadline; zero does not block.
        auto t0 = Clock::now();
        CHECK_FALSE(w.wait(15ms));
        CHECK(ms_since(t0) >= 15.0);
        CHECK_FALSE(w.wait(0s));

        // Kill while waiting: unwound at once, nothing left registered.
        bool unwound = false;
        struct Flag {
            bool* f;
            ~Flag() { *f = true; }
        };
        auto victim = cogent::spawn([&] {
            Flag fl{&unwound};
            w.wait({});
        });
        cogent::sleep(0);
        victim.kill();
        CHECK(unwound);
        CHECK(victim.killed());

        // FIFO: waiters resume in the order they started waiting.
        std::vector<int> order;
        std::vector<Greenlet<void>> gs;
        for (int i = 0; i < 4; ++i)
            gs.push_back(cogent::spawn([&w, &order, i] {
                if (w.wait(5s)) order.push_back(i);
            }));
        cogent::sleep(0);
        w.make_ready();
        CHECK(order.empty());  // waking never switches
        cogent::joinall(gs);
        CHECK(order == std::vector<int>{0, 1, 2, 3});
        // Ready: returns true at once.
        CHECK(w.wait(0s));
    }
}

}  // TEST_SUITE
