// Greenlet<T>: gevent.Greenlet semantics (spawn, start order, join, get, kill, links, names,
// reporting of uncaught exceptions).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
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
using cogent::SpawnOptions;
using cogent::Timeout;
using Clock = std::chrono::steady_clock;

namespace {

// Yields until pred() holds or `rounds` yields have passed.
template <class P>
bool yield_until(P pred, int rounds = 50) {
    for (int i = 0; i < rounds && !pred(); ++i) cogent::sleep(0);
    return pred();
}

struct MyError : std::exception {
    const char* what() const noexcept override { return "my error text"; }
};

}  // namespace

TEST_SUITE("greenlet") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "spawn only schedules; the greenlet runs when the spawner yields") {
        bool ran = false;
        auto g = cogent::spawn([&] { ran = true; });
        CHECK_FALSE(ran);
        CHECK(g.started());
        CHECK_FALSE(g.dead());
        CHECK_FALSE(g.ready());
        cogent::sleep(0);
        CHECK(ran);
        CHECK(g.dead());
        CHECK(g.ready());
        CHECK(g.successful());
        CHECK_FALSE(g.started());  // gevent: started is bool(greenlet), false once dead
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "spawned greenlets start in FIFO order and interleave on sleep(0)") {
        std::vector<int> log;
        std::vector<Greenlet<void>> gs;
        for (int i = 0; i < 5; ++i)
            gs.push_back(cogent::spawn([&log, i] {
                log.push_back(i);
                cogent::sleep(0);
                log.push_back(10 + i);
            }));
        cogent::joinall(gs);
        CHECK(log == std::vector<int>{0, 1, 2, 3, 4, 10, 11, 12, 13, 14});
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "make_greenlet does not schedule until start()") {
        bool ran = false;
        auto g = cogent::make_greenlet([&] { ran = true; });
        CHECK_FALSE(g.started());
        cogent::sleep(0);
        CHECK_FALSE(ran);
        g.start();
        CHECK(g.started());
        CHECK_FALSE(g.active());  // scheduled, not yet running
        g.start();                // no-op: it runs once
        g.join();
        CHECK(ran);
        CHECK_FALSE(g.active());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "spawn_later and start_later run no earlier than the delay") {
        auto t0 = Clock::now();
        double ran_at = -1, ran_at2 = -1;
        auto g = cogent::spawn_later(40ms, [&] { ran_at = ms_since(t0); });
        auto h = cogent::make_greenlet([&] { ran_at2 = ms_since(t0); });
        h.start_later(60ms);
        CHECK(g.started());
        cogent::sleep(0);
        CHECK(ran_at < 0);  // not yet
        g.join();
        h.join();
        CHECK(ran_at >= 40.0);
        CHECK(ran_at < 40.0 + 2000.0);
        CHECK(ran_at2 >= 60.0);
        CHECK(ran_at2 < 60.0 + 2000.0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "join(timeout) returns false on timeout and true once dead") {
        Event go;
        auto g = cogent::spawn([&] { go.wait(); });
        auto t0 = Clock::now();
        CHECK_FALSE(g.join(20ms));
        CHECK(ms_since(t0) >= 20.0);
        CHECK_FALSE(g.dead());
        CHECK(g.active());
        go.set();
        CHECK(g.join(5s));
        CHECK(g.dead());
        CHECK(g.join(0s));  // dead: true at once
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get returns the value") {
        auto g = cogent::spawn([](int a, int b) { return a * b; }, 6, 7);
        CHECK(g.get() == 42);
        CHECK(g.value() == 42);
        CHECK(g.successful());
        CHECK_FALSE(g.exception());
        CHECK_FALSE(g.killed());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "get rethrows the greenlet's exception, which is stored") {
        StderrCapture cap;
        auto g = cogent::spawn([]() -> int { throw std::runtime_error("boom"); });
        g.join();
        CHECK(g.dead());
        CHECK_FALSE(g.successful());
        REQUIRE(g.exception());
        std::string msg;
        try {
            g.get();
        } catch (const std::runtime_error& e) {
            msg = e.what();
        }
        CHECK(msg == "boom");
        CHECK_THROWS_AS(g.value(), std::logic_error);
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "get(timeout) throws Timeout; get(0s) does not block") {
        Event go;
        bool ran = false;
        auto g = cogent::spawn([&] {
            ran = true;
            go.wait();
            return 5;
        });
        // Zero: do not block, not even to let the just-spawned greenlet run.
        CHECK_THROWS_AS(g.get(0s), Timeout);
        CHECK_FALSE(ran);
        auto t0 = Clock::now();
        CHECK_THROWS_AS(g.get(20ms), Timeout);
        CHECK(ms_since(t0) >= 20.0);
        CHECK(ran);
        go.set();
        g.join();
        CHECK(g.get(0s) == 5);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Greenlet<void>") {
        int n = 0;
        Greenlet<void> g = cogent::spawn([&] { n = 3; });
        CHECK_NOTHROW(g.get());
        CHECK(n == 3);
        CHECK(g.successful());

        StderrCapture cap;
        Greenlet<void> f = cogent::spawn([] { throw std::invalid_argument("void failure"); });
        CHECK_THROWS_AS(f.get(), std::invalid_argument);
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "move-only results and arguments") {
        auto g = cogent::spawn(
            [](std::unique_ptr<int> p, std::unique_ptr<std::string> s) {
                return std::make_unique<std::string>(*s + std::to_string(*p));
            },
            std::make_unique<int>(5), std::make_unique<std::string>("n="));
        std::unique_ptr<std::string>& r = g.get();
        REQUIRE(r);
        CHECK(*r == "n=5");
        std::unique_ptr<std::string> taken = std::move(g.get());
        CHECK(*taken == "n=5");
        CHECK_FALSE(g.get());  // moved out of the stored result
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "kill of a running greenlet raises GreenletExit at its suspension point") {
        bool unwound = false, caught_exit = false, after = false;
        auto g = cogent::spawn([&]() -> int {
            SetOnDestroy guard{&unwound};
            try {
                cogent::sleep(10s);
            } catch (const GreenletExit&) {
                caught_exit = true;
                throw;
            }
            after = true;
            return 1;
        });
        cogent::sleep(0);
        REQUIRE(g.active());
        auto t0 = Clock::now();
        g.kill();
        CHECK(ms_since(t0) < 2000.0);
        CHECK(g.dead());
        CHECK(caught_exit);
        CHECK(unwound);
        CHECK_FALSE(after);
        CHECK(g.successful());
        CHECK(g.killed());
        CHECK_FALSE(g.exception());
        CHECK_THROWS_AS(g.get(), GreenletExit);
        CHECK_THROWS_AS(g.value(), std::logic_error);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill before start: the greenlet never runs") {
        bool ran = false;
        auto g = cogent::spawn([&] { ran = true; });
        g.kill();
        CHECK(g.dead());
        CHECK(g.successful());
        CHECK(g.killed());
        CHECK_THROWS_AS(g.get(), GreenletExit);
        for (int i = 0; i < 5; ++i) cogent::sleep(0);
        CHECK_FALSE(ran);

        auto later = cogent::spawn_later(10ms, [&] { ran = true; });
        later.kill();
        CHECK(later.dead());
        cogent::sleep(30ms);
        CHECK_FALSE(ran);

        auto unstarted = cogent::make_greenlet([&] { ran = true; });
        unstarted.kill();
        CHECK(unstarted.dead());
        unstarted.start();  // dead: nothing to start
        cogent::sleep(0);
        CHECK_FALSE(ran);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "kill with a custom exception: exception() holds it") {
        StderrCapture cap;
        auto g = cogent::spawn([] { cogent::sleep(10s); });
        cogent::sleep(0);
        g.kill(std::runtime_error("custom kill"));
        CHECK(g.dead());
        CHECK_FALSE(g.successful());
        CHECK_FALSE(g.killed());
        REQUIRE(g.exception());
        std::string msg;
        try {
            std::rethrow_exception(g.exception());
        } catch (const std::runtime_error& e) {
            msg = e.what();
        }
        CHECK(msg == "custom kill");

        // The same before it started.
        auto u = cogent::spawn([] {});
        u.kill(std::out_of_range("pre-start"));
        CHECK(u.dead());
        CHECK_FALSE(u.successful());
        CHECK_THROWS_AS(u.get(), std::out_of_range);
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a greenlet that catches GreenletExit stays alive; kill does not throw") {
        Event release;
        int caught = 0;
        auto g = cogent::spawn([&] {
            try {
                cogent::sleep(10s);
            } catch (const GreenletExit&) {
                ++caught;
            }
            release.wait();
            return 9;
        });
        cogent::sleep(0);
        auto t0 = Clock::now();
        CHECK_NOTHROW(g.kill(GreenletExit(), true, 30ms));
        CHECK(ms_since(t0) >= 30.0);
        CHECK(caught == 1);
        CHECK_FALSE(g.dead());
        CHECK(g.active());
        release.set();
        CHECK(g.get() == 9);
        CHECK(g.successful());
        CHECK_FALSE(g.killed());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill never throws the target's exception") {
        StderrCapture cap;
        auto g = cogent::spawn([] {
            try {
                cogent::sleep(10s);
            } catch (const GreenletExit&) {
                throw std::runtime_error("converted");
            }
        });
        cogent::sleep(0);
        CHECK_NOTHROW(g.kill());
        CHECK(g.dead());
        CHECK_FALSE(g.successful());
        CHECK_THROWS_AS(g.get(), std::runtime_error);
        // Killing a dead greenlet is a no-op.
        CHECK_NOTHROW(g.kill());
        // Non-blocking kill returns at once; the greenlet dies when the killer yields.
        auto h = cogent::spawn([] { cogent::sleep(10s); });
        cogent::sleep(0);
        h.kill(GreenletExit(), false);
        CHECK_FALSE(h.dead());
        CHECK(h.join(5s));
        CHECK(h.killed());
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a greenlet can kill itself") {
        bool after_block = false, after_nonblock = false, exit_seen = false;
        Greenlet<void> g;
        g = cogent::spawn([&] {
            g.kill();  // raises GreenletExit right here
            after_block = true;
        });
        g.join();
        CHECK(g.dead());
        CHECK(g.killed());
        CHECK_FALSE(after_block);

        Greenlet<void> h;
        h = cogent::spawn([&] {
            h.kill(GreenletExit(), false);  // raised at the next suspension point
            after_nonblock = true;
            try {
                cogent::sleep(0);
            } catch (const GreenletExit&) {
                exit_seen = true;
                throw;
            }
        });
        h.join();
        CHECK(after_nonblock);
        CHECK(exit_seen);
        CHECK(h.killed());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "link, link_value, link_exception run in a new greenlet after the end") {
        StderrCapture cap;
        std::vector<std::string> log;
        Event done;
        auto ok = cogent::spawn([] { return 1; });
        auto bad = cogent::spawn([]() -> int { throw std::runtime_error("x"); });
        AnyGreenlet seen;
        bool link_ran_on_hub = true;
        ok.link([&](AnyGreenlet g) {
            seen = g;
            link_ran_on_hub = cogent::getcurrent().describe().rfind("<Hub", 0) == 0;
            log.push_back("ok.link");
        });
        ok.link_value([&](AnyGreenlet) { log.push_back("ok.link_value"); });
        ok.link_exception([&](AnyGreenlet) { log.push_back("ok.link_exception"); });
        bad.link([&](AnyGreenlet) { log.push_back("bad.link"); });
        bad.link_value([&](AnyGreenlet) { log.push_back("bad.link_value"); });
        bad.link_exception([&](AnyGreenlet) {
            log.push_back("bad.link_exception");
            done.set();
        });
        cogent::joinall({ok, bad});
        CHECK(done.wait(5s));
        yield_until([&] { return log.size() >= 4; });
        cogent::sleep(0);
        std::sort(log.begin(), log.end());
        CHECK(log == std::vector<std::string>{"bad.link", "bad.link_exception", "ok.link",
                                              "ok.link_value"});
        CHECK(seen == ok);
        CHECK_FALSE(link_ran_on_hub);
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "rawlink runs on the hub; unlink removes a link") {
        bool raw_on_hub = false, unlinked_ran = false, kept_ran = false;
        auto g = cogent::spawn([] { cogent::sleep(1ms); });
        g.rawlink([&](AnyGreenlet) {
            raw_on_hub = cogent::getcurrent().describe().rfind("<Hub", 0) == 0;
        });
        auto id = g.link([&](AnyGreenlet) { unlinked_ran = true; });
        auto id2 = g.rawlink([&](AnyGreenlet) { unlinked_ran = true; });
        g.link([&](AnyGreenlet) { kept_ran = true; });
        g.unlink(id);
        g.unlink(id2);
        g.unlink(12345);  // unknown id: ignored
        g.join();
        CHECK(yield_until([&] { return kept_ran; }));
        CHECK(raw_on_hub);
        CHECK_FALSE(unlinked_ran);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "links added after death still run") {
        auto g = cogent::spawn([] { return 3; });
        g.join();
        bool link_ran = false, raw_ran = false, value_ran = false, exc_ran = false;
        g.link([&](AnyGreenlet) { link_ran = true; });
        g.rawlink([&](AnyGreenlet) { raw_ran = true; });
        g.link_value([&](AnyGreenlet) { value_ran = true; });
        g.link_exception([&](AnyGreenlet) { exc_ran = true; });
        CHECK(yield_until([&] { return link_ran && raw_ran && value_ran; }));
        CHECK_FALSE(exc_ran);
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "a killed greenlet counts as successful for links, also killed before start") {
        bool value_ran = false, exc_ran = false, pre_link_ran = false, pre_value_ran = false;
        auto g = cogent::spawn([] { cogent::sleep(10s); });
        g.link_value([&](AnyGreenlet) { value_ran = true; });
        g.link_exception([&](AnyGreenlet) { exc_ran = true; });
        cogent::sleep(0);
        g.kill();
        auto u = cogent::spawn([] {});
        u.link([&](AnyGreenlet) { pre_link_ran = true; });
        u.link_value([&](AnyGreenlet) { pre_value_ran = true; });
        u.kill();
        CHECK(yield_until([&] { return value_ran && pre_link_ran && pre_value_ran; }));
        CHECK_FALSE(exc_ran);
    }

    // gevent's test__greenlet.py, TestStuff._test_multiple_listeners_error_unlink: "notification
    // must not happen after unlink even though notification process has been already started".
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "an earlier link callback can unlink a later one (gevent: "
                      "test_multiple_listeners_error_unlink)") {
        StderrCapture cap;
        for (int kind = 0; kind < 4; ++kind) {
            CAPTURE(kind);  // 0 link, 1 link_value, 2 rawlink, 3 link_exception
            auto p = kind == 3 ? cogent::spawn([]() -> int { throw MyError(); })
                               : cogent::spawn([] { return 5; });
            auto add = [&](std::function<void(AnyGreenlet)> cb) {
                switch (kind) {
                    case 0:
                        return p.link(std::move(cb));
                    case 1:
                        return p.link_value(std::move(cb));
                    case 2:
                        return p.rawlink(std::move(cb));
                    default:
                        return p.link_exception(std::move(cb));
                }
            };
            std::vector<int> results;
            cogent::LinkId id1 = 0, id2 = 0;
            id1 = add([&](AnyGreenlet g) {
                g.unlink(id2);
                results.push_back(5);
                throw MyError();
            });
            id2 = add([&](AnyGreenlet g) {
                g.unlink(id1);
                results.push_back(5);
                throw MyError();
            });
            add([](AnyGreenlet) { throw MyError(); });
            p.join();
            for (int i = 0; i < 10; ++i) cogent::sleep(0);
            CHECK(results == std::vector<int>{5});
        }
        cap.text();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "links run one at a time in order: a link callback runs until it blocks "
                      "before the next link") {
        // gevent's Greenlet._notify_links pops one link at a time and runs it; link() wraps the
        // callback in a new greenlet switched to at once, so it runs up to its first block before
        // the next link (here a rawlink, and a joiner) is even looked at.
        std::vector<std::string> log;
        auto g = cogent::spawn([] {});
        g.link([&](AnyGreenlet) {
            log.push_back("link 1a");
            cogent::sleep(0);
            log.push_back("link 1b");
        });
        g.rawlink([&](AnyGreenlet) { log.push_back("rawlink 2"); });
        g.link([&](AnyGreenlet) { log.push_back("link 3"); });
        g.join();
        log.push_back("joined");
        for (int i = 0; i < 5; ++i) cogent::sleep(0);
        CHECK(log ==
              std::vector<std::string>{"link 1a", "rawlink 2", "link 3", "joined", "link 1b"});
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "links added while the links are being notified run in the same pass, after the others") {
        std::vector<std::string> log;
        auto g = cogent::spawn([] {});
        g.rawlink([&](AnyGreenlet self) {
            log.push_back("first");
            self.rawlink([&](AnyGreenlet) { log.push_back("added by first"); });
            self.link([&](AnyGreenlet) { log.push_back("link added by first"); });
        });
        g.rawlink([&](AnyGreenlet) { log.push_back("second"); });
        g.join();  // the joiner was queued before the links added while notifying
        log.push_back("joined");
        for (int i = 0; i < 5; ++i) cogent::sleep(0);
        CHECK(log == std::vector<std::string>{"first", "second", "joined", "added by first",
                                              "link added by first"});
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "a stale LinkId (its link has run) unlinks nothing, even when its memory is reused") {
        auto g = cogent::spawn([] { return 1; });
        g.join();
        std::vector<cogent::LinkId> seen;
        for (int round = 0; round < 20; ++round) {
            CAPTURE(round);
            bool first_ran = false, second_ran = false;
            cogent::LinkId stale = g.rawlink([&](AnyGreenlet) { first_ran = true; });
            REQUIRE(yield_until([&] { return first_ran; }));
            // Same size, freed just now: the allocator hands the old node's memory to this one.
            cogent::LinkId fresh = g.rawlink([&](AnyGreenlet) { second_ran = true; });
            CHECK(fresh != stale);
            g.unlink(stale);  // its link has run: nothing to remove
            CHECK(yield_until([&] { return second_ran; }));
            seen.push_back(stale);
            seen.push_back(fresh);
        }
        std::sort(seen.begin(), seen.end());
        CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());  // never reused

        // Nor does one greenlet's id name another greenlet's link.
        auto h = cogent::spawn([] {});
        bool h_ran = false, g_ran = false;
        cogent::LinkId hid = h.rawlink([&](AnyGreenlet) { h_ran = true; });
        cogent::LinkId gid = g.rawlink([&](AnyGreenlet) { g_ran = true; });
        CHECK(hid != gid);
        g.unlink(hid);
        g.unlink(0);
        h.join();
        CHECK(yield_until([&] { return h_ran && g_ran; }));
    }

    // gevent's test__greenlet.py TestBasic.test_simple_exit / test_error_exit: `started` is
    // bool(greenlet), true from start() until it is dead.
    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "started() is true from start() until death, false once dead (gevent: test_simple_exit)") {
        StderrCapture cap;
        std::vector<AnyGreenlet> link_test;
        auto g = cogent::make_greenlet(
            [](int v) {
                cogent::sleep(1ms);
                return v;
            },
            5);
        g.rawlink([&](AnyGreenlet x) { link_test.push_back(x); });
        CHECK_FALSE(g.dead());
        CHECK_FALSE(g.started());
        CHECK_FALSE(g.ready());
        CHECK_FALSE(g.successful());

        g.start();
        CHECK_FALSE(g.dead());
        CHECK(g.started());
        CHECK_FALSE(g.ready());
        CHECK_FALSE(g.successful());

        cogent::sleep(0);
        CHECK_FALSE(g.dead());
        CHECK(g.started());
        CHECK(g.active());
        CHECK(link_test.empty());

        g.join();
        CHECK(g.dead());
        CHECK_FALSE(g.started());  // changed
        CHECK(g.ready());
        CHECK(g.successful());
        CHECK(g.value() == 5);
        CHECK(yield_until([&] { return !link_test.empty(); }));
        CHECK((link_test.size() == 1 && link_test[0] == g));

        auto e = cogent::spawn([] {
            cogent::sleep(1ms);
            throw MyError();
        });
        e.join();
        CHECK(e.dead());
        CHECK_FALSE(e.started());
        CHECK(e.ready());
        CHECK_FALSE(e.successful());
        CHECK(e.exception());
        cap.text();
    }

    // gevent's test__greenlet.py TestKill, TestKillAfterStart, TestKillAfterStartLater and
    // TestKillWhileRunning, each with block true/false and with kill()/killall().
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "kill: unstarted, started, started later, running; blocking or not; kill or "
                      "killall (gevent: TestKill)") {
        for (int mode = 0; mode < 4; ++mode) {
            for (int block = 0; block < 2; ++block) {
                for (int use_killall = 0; use_killall < 2; ++use_killall) {
                    CAPTURE(mode);  // 0 never started, 1 start(), 2 start_later(), 3 running
                    CAPTURE(block);
                    CAPTURE(use_killall);
                    std::vector<AnyGreenlet> link_test;
                    std::vector<int> result;
                    auto g = cogent::make_greenlet([&result, mode] {
                        if (mode == 3) cogent::sleep(10s);
                        result.push_back(1);
                    });
                    g.link([&](AnyGreenlet x) { link_test.push_back(x); });
                    if (mode == 1 || mode == 3) g.start();
                    if (mode == 2) g.start_later(1s);
                    if (mode == 3) cogent::sleep(0);
                    auto killer = [&] {
                        if (use_killall)
                            cogent::killall(std::vector<AnyGreenlet>{g}, GreenletExit(),
                                            block != 0);
                        else
                            g.kill(GreenletExit(), block != 0);
                        if (!block) cogent::sleep(0);  // let a scheduled kill land
                    };
                    auto assert_killed = [&] {
                        CHECK(g.dead());
                        CHECK_FALSE(g.started());
                        CHECK(g.ready());
                        CHECK(g.successful());
                        CHECK(g.killed());
                        CHECK_FALSE(g.exception());
                    };
                    killer();
                    assert_killed();
                    cogent::sleep(1ms);  // spin the loop: it must not run
                    assert_killed();
                    killer();  // killing a second time must not hurt
                    assert_killed();
                    CHECK(yield_until([&] { return !link_test.empty(); }));
                    CHECK(result.empty());
                    CHECK((link_test.size() == 1 && link_test[0] == g));
                }
            }
        }
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "two non-blocking kills before the first lands deliver two exceptions, in order") {
        std::vector<std::string> caught;
        auto g = cogent::spawn([&] {
            while (caught.size() < 3) {  // bounded: a wrong count must fail, not hang
                try {
                    cogent::sleep(10s);
                } catch (const std::runtime_error& e) {
                    caught.push_back(e.what());
                }
            }
        });
        cogent::sleep(0);
        REQUIRE(g.active());
        g.kill(std::runtime_error("one"), false);
        g.kill(std::runtime_error("two"), false);
        CHECK(caught.empty());  // nothing lands before the killer yields
        CHECK(yield_until([&] { return caught.size() >= 2; }, 10));
        CHECK(caught == std::vector<std::string>{"one", "two"});
        CHECK(g.active());

        // A second kill that arrives after the first has killed it is a no-op.
        g.kill(GreenletExit(), false);
        g.kill(std::runtime_error("late"), false);
        CHECK(g.join(5s));
        CHECK(g.killed());
        CHECK(g.successful());
        CHECK(caught.size() == 2);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "names: Greenlet-N by default, custom when given") {
        auto a = cogent::spawn([] {});
        auto b = cogent::spawn([] {});
        std::string na = a.name(), nb = b.name();
        REQUIRE(na.rfind("Greenlet-", 0) == 0);
        REQUIRE(nb.rfind("Greenlet-", 0) == 0);
        long ia = std::stol(na.substr(9)), ib = std::stol(nb.substr(9));
        CHECK(ib == ia + 1);
        CHECK(a.raw().describe() == na);

        auto c = cogent::spawn(SpawnOptions{.name = "worker"}, [] { return 1; });
        CHECK(c.name() == "worker");
        CHECK(c.raw().describe() == "worker");
        c.set_name("renamed");
        CHECK(c.name() == "renamed");
        cogent::joinall({a, b, c});
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "an uncaught exception is printed with name, type and message, and stored") {
        StderrCapture cap;
        auto g = cogent::spawn(SpawnOptions{.name = "bad-worker"}, []() -> int {
            cogent::sleep(0);
            throw std::runtime_error("kaboom 123");
        });
        auto h = cogent::spawn(SpawnOptions{.name = "odd-worker"}, [] { throw MyError(); });
        auto i = cogent::spawn(SpawnOptions{.name = "int-thrower"}, [] { throw 42; });
        cogent::joinall({g, h, i});
        std::string err = cap.text();
        INFO("stderr: " << err);
        CHECK(err.find("bad-worker") != std::string::npos);
        CHECK(err.find("std::runtime_error") != std::string::npos);
        CHECK(err.find("kaboom 123") != std::string::npos);
        CHECK(err.find("odd-worker") != std::string::npos);
        CHECK(err.find("MyError") != std::string::npos);
        CHECK(err.find("my error text") != std::string::npos);
        CHECK(err.find("int-thrower") != std::string::npos);
        CHECK_THROWS_AS(g.get(), std::runtime_error);
        CHECK_THROWS_AS(h.get(), MyError);
        CHECK_THROWS_AS(i.get(), int);
        // The failure went nowhere else: we are still running, and get() keeps rethrowing it.
        CHECK_THROWS_AS(g.get(), std::runtime_error);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a successful greenlet prints nothing; a killed one prints nothing") {
        StderrCapture cap;
        auto g = cogent::spawn([] { return 1; });
        auto k = cogent::spawn([] { cogent::sleep(10s); });
        cogent::sleep(0);
        k.kill();
        g.join();
        CHECK(cap.text().empty());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a stray raw switch into a parked greenlet raises InvalidSwitchError there") {
        Event never;
        cogent::RawGreenlet main = cogent::getcurrent();
        std::string caught;
        auto g = cogent::spawn([&] {
            try {
                never.wait();
            } catch (const cogent::InvalidSwitchError& e) {
                caught = e.what();
            }
            main.switch_to();  // back to whoever switched in; then wait to be killed
        });
        cogent::sleep(0);
        REQUIRE(g.active());
        g.raw().switch_to();  // not what Event::wait waits for
        CHECK(caught.find("Event::wait") != std::string::npos);
        // g is now suspended in its raw switch to us; nothing is left registered on `never`.
        g.kill();
        CHECK(g.dead());
        CHECK(g.killed());
        never.set();
        cogent::sleep(0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "handles are shared; the greenlet runs even if every handle is dropped") {
        bool ran = false;
        {
            auto g = cogent::spawn([&] {
                cogent::sleep(1ms);
                ran = true;
            });
        }
        CHECK(yield_until([&] {
            cogent::sleep(1ms);
            return ran;
        }));
        auto a = cogent::spawn([] { return 1; });
        AnyGreenlet b = a;
        CHECK(a == b);
        CHECK(b.valid());
        CHECK_FALSE(AnyGreenlet{}.valid());
        b.join();
        CHECK(a.dead());
    }

}  // TEST_SUITE

TEST_SUITE("greenlet") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "each greenlet keeps its own exception state across switches inside catch") {
        // Two greenlets suspended inside catch blocks at once: a `throw;` after resuming must
        // rethrow the greenlet's own exception, not the other one's (the C++ runtime's caught-
        // exception stack is per thread; cogent swaps it per greenlet).
        std::string seen_a, seen_b;
        int uncaught_in_dtor = -1;
        auto a = cogent::spawn([&] {
            try {
                throw std::runtime_error("A");
            } catch (...) {
                cogent::sleep(std::chrono::milliseconds(10));
                try {
                    throw;
                } catch (const std::runtime_error& e) {
                    seen_a = e.what();
                }
            }
        });
        auto b = cogent::spawn([&] {
            try {
                throw std::logic_error("B");
            } catch (...) {
                cogent::sleep(std::chrono::milliseconds(20));
                CHECK(std::current_exception() != nullptr);
                try {
                    throw;
                } catch (const std::logic_error& e) {
                    seen_b = e.what();
                }
            }
        });
        // A greenlet that blocks in a destructor while an exception unwinds its stack.
        struct BlockingDtor {
            int* out;
            ~BlockingDtor() {
                cogent::sleep(std::chrono::milliseconds(5));
                *out = std::uncaught_exceptions();
            }
        };
        auto c = cogent::spawn([&] {
            try {
                BlockingDtor d{&uncaught_in_dtor};
                throw std::runtime_error("C");
            } catch (const std::runtime_error&) {
            }
        });
        cogent::sleep(std::chrono::milliseconds(1));
        CHECK(std::current_exception() == nullptr);  // main is in no catch block
        CHECK(std::uncaught_exceptions() == 0);
        cogent::joinall({a, b, c});
        CHECK(seen_a == "A");
        CHECK(seen_b == "B");
        CHECK(uncaught_in_dtor == 1);
        CHECK(std::current_exception() == nullptr);
    }

}  // TEST_SUITE
