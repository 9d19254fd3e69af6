// joinall, killall, iwait/wait (over greenlets and Events), and Event itself.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
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

// Returns `value` once `prev` has ended: deaths in a fixed order whatever the machine's load
// (two sleepers' timers can expire in one loop turn on a loaded machine and die in any order).
Greenlet<int> after(Greenlet<int> prev, int value) {
    return cogent::spawn([prev, value]() mutable {
        prev.join();
        return value;
    });
}

// Returns `value` once `gate` is set.
Greenlet<int> gated(Event& gate, int value) {
    return cogent::spawn([&gate, value] {
        gate.wait();
        return value;
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
    bool wait(cogent::TimeoutArg t) {
        return cogent::wait(std::vector<Event*>{&ev}, t).size() == 1;
    }
    void make_ready() { ev.set(); }
};

}  // namespace

TEST_SUITE("wait") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "joinall returns the greenlets in completion order") {
        auto b = sleeper(10);
        auto c = after(b, 20);
        auto a = after(c, 30);
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "joinall on timeout returns the partial list without throwing") {
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

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "joinall raise_error rethrows the first failure; without it, nothing is thrown") {
        QuietStderr quiet;
        Event release;
        auto ok = gated(release, 20);
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
        release.set();
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
        Event gate;
        auto b = sleeper(5);
        auto c = after(b, 15);
        auto a = gated(gate, 40);
        auto done = cogent::joinall({a, b, c}, {}, false, 2);
        REQUIRE(done.size() == 2);
        CHECK(done[0] == b);
        CHECK(done[1] == c);
        CHECK_FALSE(a.dead());
        gate.set();
        a.join();
        CHECK_THROWS_AS(cogent::joinall({AnyGreenlet{}}), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "killall kills every greenlet and runs their destructors") {
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "killall with a custom exception and without blocking") {
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
        CHECK_THROWS_AS(
            cogent::killall(std::vector<AnyGreenlet>{stubborn, normal}, GreenletExit(), true, 30ms),
            Timeout);
        CHECK(ms_since(t0) >= 30.0);
        CHECK(normal.dead());
        CHECK_FALSE(stubborn.dead());
        release.set();
        stubborn.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "iwait and wait over greenlets yield in completion order") {
        auto b = sleeper(10);
        auto c = after(b, 20);
        auto a = after(c, 30);
        std::vector<int> order;
        for (const auto& g : cogent::iwait(std::vector<Greenlet<int>>{a, b, c}))
            order.push_back(Greenlet<int>(g).get());
        CHECK(order == std::vector<int>{10, 20, 30});

        Event gate;
        auto d = gated(gate, 15);
        auto e = sleeper(1);
        auto ready = cogent::wait(std::vector<AnyGreenlet>{d, e}, {}, 1);
        REQUIRE(ready.size() == 1);
        CHECK(ready[0] == e);
        CHECK_FALSE(d.dead());
        gate.set();
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "iwait over a mix: timeout ends the iteration, nothing stays registered") {
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event set never switches; waiters wake in FIFO order") {
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event set then clear before the waiters run still wakes them (true)") {
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

    // gevent's test__event.py TestEventBasics.test_wait_while_notifying (gevent issue 1520): a
    // wait() on an event that is set while its earlier waiters are still to be woken waits its
    // turn behind them, and is woken in the same round (no trip around the loop: a hub callback
    // queued after the set() has not run yet; gevent checks that with a check watcher).
    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "Event: wait() while the waiters of a set() are being woken runs after them") {
        Event event;
        std::vector<int> results;
        auto wait_then_append = [&](int arg) {
            CHECK(event.wait());
            results.push_back(arg);
        };
        auto g1 = cogent::spawn([&] { wait_then_append(1); });
        auto g2 = cogent::spawn([&] { wait_then_append(2); });
        cogent::sleep(0);
        CHECK(event.linkcount() == 2);
        event.set();
        cogent::get_hub().run_callback([&] { results.push_back(4); });
        wait_then_append(3);
        CHECK(results == std::vector<int>{1, 2, 3});
        cogent::sleep(0);
        CHECK(results == std::vector<int>{1, 2, 3, 4});
        cogent::joinall({g1, g2});
        // Nothing pending any more: a wait() on the set event returns at once, without yielding.
        bool ran = false;
        auto other = cogent::spawn([&] { ran = true; });
        CHECK(event.wait());
        CHECK_FALSE(ran);
        other.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event: a woken waiter that waits again runs after the rest of its round") {
        Event ev;
        std::vector<int> order;
        auto a = cogent::spawn([&] {
            ev.wait();
            order.push_back(1);
            ev.wait();  // still set, the round is under way: queued behind b
            order.push_back(11);
        });
        auto b = cogent::spawn([&] {
            ev.wait();
            order.push_back(2);
        });
        cogent::sleep(0);
        ev.set();
        cogent::get_hub().run_callback([&] { order.push_back(4); });
        cogent::joinall({a, b});
        CHECK(order == std::vector<int>{1, 2, 11, 4});  // all in the one round, before the callback
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "Event: a wait() queued behind a round returns true even if cleared before its turn") {
        Event ev;
        std::vector<int> order;
        auto t0 = Clock::now();
        auto a = cogent::spawn([&] {
            ev.wait();
            order.push_back(1);
            order.push_back(ev.wait(2s) ? 11 : 10);  // it was set when a looked
        });
        auto b = cogent::spawn([&] {
            ev.wait();
            order.push_back(2);
            ev.clear();
        });
        cogent::sleep(0);
        ev.set();
        cogent::joinall({a, b});
        CHECK(order == std::vector<int>{1, 2, 11});
        CHECK(ms_since(t0) < 1000.0);  // woken in the round, not by the timeout
        // A zero timeout still never blocks, even while a round is pending.
        auto c = cogent::spawn([&] { ev.wait(); });
        cogent::sleep(0);
        ev.set();
        CHECK(ev.wait(0s));
        c.join();
    }

    // gevent's TestGeventWaitOnEvent.test_set_during_wait (gevent issue 771): a greenlet woken by a
    // set() (so running inside the wake-up round) clears the event and waits on it with
    // cogent::wait: the round must not report the event to that new registration.
    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "Event: cleared and waited on again from inside its wake-up round, it is not reported") {
        Event event;
        auto waiter = cogent::spawn([&] {
            auto setter = cogent::spawn([&] { event.set(); });
            CHECK(event.wait());
            CHECK(event.ready());
            setter.join();
            event.clear();
            CHECK_FALSE(event.ready());
            auto got = cogent::wait(std::vector<Event*>{&event}, 10ms);
            CHECK_FALSE(event.ready());
            CHECK(got.empty());
        });
        waiter.join();
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "Event::rawlink: called on the hub with the event, once, in FIFO order with the waiters") {
        Event ev;
        std::vector<std::string> order;
        auto a = cogent::spawn([&] {
            ev.wait();
            order.push_back("a");
        });
        cogent::sleep(0);
        Event* seen = nullptr;
        bool could_block = true;
        cogent::LinkId id = ev.rawlink([&](Event& e) {
            seen = &e;
            order.push_back("r");
            Event never;
            try {
                never.wait();  // on the hub: refused
            } catch (const cogent::BlockingSwitchOutError&) {
                could_block = false;
            }
        });
        auto b = cogent::spawn([&] {
            ev.wait();
            order.push_back("b");
        });
        cogent::sleep(0);
        CHECK(ev.linkcount() == 3);
        ev.set();
        CHECK(order.empty());  // not from set()
        cogent::joinall({a, b});
        CHECK(order == std::vector<std::string>{"a", "r", "b"});
        CHECK(seen == &ev);
        CHECK_FALSE(could_block);
        CHECK(ev.linkcount() == 0);
        ev.unlink(id);  // fired: nothing
        ev.clear();
        ev.set();
        cogent::sleep(0);
        CHECK(order.size() == 3);  // once
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event::unlink: before set the callback never runs; stale, unknown and "
                      "foreign ids do nothing") {
        Event ev, other;
        int calls1 = 0, calls2 = 0, calls_other = 0;
        cogent::LinkId id1 = ev.rawlink([&](Event&) { ++calls1; });
        CHECK(ev.linkcount() == 1);
        ev.unlink(id1);
        CHECK(ev.linkcount() == 0);
        cogent::LinkId id2 = ev.rawlink([&](Event&) { ++calls2; });
        cogent::LinkId id_other = other.rawlink([&](Event&) { ++calls_other; });
        CHECK(id2 != id1);
        CHECK(id_other != id2);
        ev.unlink(id1);       // removed already: must not remove the newer link
        ev.unlink(id_other);  // another event's
        ev.unlink(0);
        ev.unlink(~cogent::LinkId(0));
        CHECK(ev.linkcount() == 1);
        CHECK(other.linkcount() == 1);
        ev.set();
        other.set();
        cogent::sleep(0);
        CHECK(calls1 == 0);
        CHECK(calls2 == 1);
        CHECK(calls_other == 1);
        // A link added to a set event runs at the next turn of the hub, not at once.
        ev.rawlink([&](Event&) { ++calls2; });
        CHECK(calls2 == 1);
        cogent::sleep(0);
        CHECK(calls2 == 2);
        CHECK_THROWS_AS(ev.rawlink(nullptr), std::invalid_argument);
        // One never fired is freed with the event (ASan: no leak).
        Event unset;
        unset.rawlink([](Event&) { FAIL("never set"); });
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "Event::rawlink: early links may unlink later ones, throw, or destroy the event") {
        std::vector<int> order;
        {
            Event ev;
            cogent::LinkId second = 0;
            ev.rawlink([&](Event& e) {
                order.push_back(1);
                e.unlink(second);
            });
            second = ev.rawlink([&](Event&) { order.push_back(2); });
            ev.rawlink([&](Event&) { order.push_back(3); });
            ev.set();
            cogent::sleep(0);
            CHECK(order == std::vector<int>{1, 3});
        }
        {
            order.clear();
            Event ev;
            StderrCapture err;
            ev.rawlink([&](Event&) {
                order.push_back(1);
                throw std::runtime_error("boom from a rawlink");
            });
            ev.rawlink([&](Event&) { order.push_back(2); });
            ev.set();
            cogent::sleep(0);
            CHECK(order == std::vector<int>{1, 2});
            CHECK(err.text().find("boom from a rawlink") != std::string::npos);
        }
        {
            order.clear();
            auto ev = std::make_unique<Event>();
            ev->rawlink([&](Event&) {
                order.push_back(1);
                ev.reset();
            });
            ev->rawlink([&](Event&) { order.push_back(2); });
            ev->set();
            cogent::sleep(0);
            CHECK(order == std::vector<int>{1});
            CHECK(ev == nullptr);
        }
        {
            // set() then clear() before the round: links there at the set() still run.
            order.clear();
            Event ev;
            ev.rawlink([&](Event& e) { order.push_back(e.is_set() ? 11 : 10); });
            ev.set();
            ev.clear();
            cogent::sleep(0);
            CHECK(order == std::vector<int>{10});
        }
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event: links added during a round wait for the next round") {
        // gevent's _notify_links notifies the links that were there when it began; one added by a
        // callback is notified by a new round, after what was queued on the hub meanwhile.
        Event ev;
        std::vector<std::string> order;
        ev.rawlink([&](Event& e) {
            order.push_back("r1");
            e.rawlink([&](Event&) { order.push_back("r2"); });
            cogent::get_hub().run_callback([&] { order.push_back("cb"); });
        });
        ev.set();
        for (int i = 0; i < 3; ++i) cogent::sleep(0);
        CHECK(order == std::vector<std::string>{"r1", "cb", "r2"});
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

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a waiter that timed out or was killed is not woken later") {
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

    TEST_CASE_TEMPLATE("waitable contract: timeout, kill while waiting, FIFO wake order", W,
                       EventWaitable, JoinWaitable, IWaitWaitable) {
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
