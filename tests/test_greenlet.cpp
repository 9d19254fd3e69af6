// Greenlet<T>: gevent.Greenlet semantics (spawn, start order, join, get, kill, links, names,
// reporting of uncaught exceptions).
#include <unistd.h>

#include <algorithm>
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawn only schedules; the greenlet runs when the spawner yields") {
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
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawned greenlets start in FIFO order and interleave on sleep(0)") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawn_later and start_later run no earlier than the delay") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "join(timeout) returns false on timeout and true once dead") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get rethrows the greenlet's exception, which is stored") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get(timeout) throws Timeout; get(0s) does not block") {
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
    auto g = cogent::spawn([](std::unique_ptr<int> p, std::unique_ptr<std::string> s) {
        return std::make_unique<std::string>(*s + std::to_string(*p));
    }, std::make_unique<int>(5), std::make_unique<std::string>("n="));
    std::unique_ptr<std::string>& r = g.get();
    REQUIRE(r);
    CHECK(*r == "n=5");
    std::unique_ptr<std::string> taken = std::move(g.get());
    CHECK(*taken == "n=5");
    CHECK_FALSE(g.get());  // moved out of the stored result
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill of a running greenlet raises GreenletExit at its suspension point") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill with a custom exception: exception() holds it") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a greenlet that catches GreenletExit stays alive; kill does not throw") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "link, link_value, link_exception run in a new greenlet after the end") {
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
    CHECK(log == std::vector<std::string>{"bad.link", "bad.link_exception", "ok.link", "ok.link_value"});
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a killed greenlet counts as successful for links, also killed before start") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "an uncaught exception is printed with name, type and message, and stored") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a successful greenlet prints nothing; a killed one prints nothing") {
    StderrCapture cap;
    auto g = cogent::spawn([] { return 1; });
    auto k = cogent::spawn([] { cogent::sleep(10s); });
    cogent::sleep(0);
    k.kill();
    g.join();
    CHECK(cap.text().empty());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a stray raw switch into a parked greenlet raises InvalidSwitchError there") {
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

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "handles are shared; the greenlet runs even if every handle is dropped") {
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
