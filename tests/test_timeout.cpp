// Timeout: RAII scopes that interrupt blocking calls, nesting, custom exceptions, with_timeout.
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::Event;
using cogent::Timeout;
using cogent::TimeoutArg;
using Clock = std::chrono::steady_clock;

namespace {

void busy_for(std::chrono::milliseconds d) {
    auto end = Clock::now() + d;
    while (Clock::now() < end) {
    }
}

}  // namespace

TEST_SUITE("timeout") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Timeout scope fires at a blocking point") {
        bool caught_mine = false;
        bool after_sleep = false;
        auto t0 = Clock::now();
        {
            Timeout t(20ms);
            CHECK(t.pending());
            try {
                cogent::sleep(5s);
                after_sleep = true;
            } catch (const Timeout& e) {
                caught_mine = e == t;
            }
            CHECK_FALSE(t.pending());  // it fired: one shot
        }
        double ms = ms_since(t0);
        CHECK(caught_mine);
        CHECK_FALSE(after_sleep);
        CHECK(ms >= 20.0);
        CHECK(ms < 2000.0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Timeout interrupts any wait: Event, join, get") {
        Event never;
        auto g = cogent::spawn([&] { never.wait(); });
        CHECK_THROWS_AS((Timeout(10ms), never.wait()), Timeout);
        {
            Timeout t(10ms);
            CHECK_THROWS_AS(never.wait(5s), Timeout);  // not "false": the scope's timeout fires
        }
        {
            Timeout t(10ms);
            CHECK_THROWS_AS(g.join(), Timeout);
        }
        CHECK_FALSE(g.dead());
        g.kill();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a Timeout does not fire if its scope exits in time") {
        {
            Timeout t(30ms);
            cogent::sleep(1ms);
            CHECK(t.pending());
        }
        CHECK_NOTHROW(cogent::sleep(60ms));
        // Expired while the greenlet was busy, but the scope ended without blocking: nothing fires.
        {
            Timeout t(2ms);
            busy_for(20ms);
        }
        CHECK_NOTHROW(cogent::sleep(20ms));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "CPU-bound code is not interrupted; the next blocking call is") {
        bool finished_busy = false;
        bool caught = false;
        try {
            Timeout t(5ms);
            busy_for(30ms);
            finished_busy = true;
            cogent::sleep(1s);
        } catch (const Timeout&) {
            caught = true;
        }
        CHECK(finished_busy);
        CHECK(caught);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "after firing once, the same scope does not fire again") {
        Timeout t(10ms);
        CHECK_THROWS_AS(cogent::sleep(1s), Timeout);
        CHECK_FALSE(t.pending());
        CHECK_NOTHROW(cogent::sleep(30ms));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "nested timeouts: the inner one fires and identifies itself") {
        bool inner_is_inner = false, inner_is_outer = true;
        {
            Timeout outer(2s);
            {
                Timeout inner(20ms);
                try {
                    cogent::sleep(5s);
                } catch (const Timeout& e) {
                    inner_is_inner = e == inner;
                    inner_is_outer = e == outer;
                }
            }
            CHECK(outer.pending());
            CHECK_NOTHROW(cogent::sleep(1ms));
        }
        CHECK(inner_is_inner);
        CHECK_FALSE(inner_is_outer);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "nested timeouts: the outer one passes through the inner scope") {
        bool inner_saw_foreign = false, outer_caught = false;
        {
            Timeout outer(20ms);
            try {
                Timeout inner(5s);
                try {
                    cogent::sleep(10s);
                } catch (const Timeout& e) {
                    if (e != inner) {
                        inner_saw_foreign = true;
                        throw;
                    }
                }
            } catch (const Timeout& e) {
                outer_caught = e == outer;
            }
        }
        CHECK(inner_saw_foreign);
        CHECK(outer_caught);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a Timeout with a custom exception throws that exception") {
        std::string msg;
        try {
            Timeout t(10ms, std::runtime_error("custom timeout"));
            cogent::sleep(5s);
        } catch (const std::runtime_error& e) {
            msg = e.what();
        } catch (const Timeout&) {
            msg = "plain Timeout";
        }
        CHECK(msg == "custom timeout");
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "an absent timeout never fires") {
        {
            Timeout t{TimeoutArg{}};
            CHECK_FALSE(t.pending());
            CHECK(t.seconds() < 0);
            CHECK_NOTHROW(cogent::sleep(20ms));
        }
        {
            Timeout t(std::nullopt);
            CHECK_FALSE(t.pending());
            CHECK_NOTHROW(cogent::sleep(20ms));
        }
        std::optional<std::chrono::milliseconds> none;
        Timeout t(none);
        CHECK_FALSE(t.pending());
        CHECK_NOTHROW(cogent::sleep(10ms));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a zero timeout fires at the next blocking call") {
        bool reached = false;
        try {
            Timeout t(0s);
            CHECK(t.seconds() == 0.0);
            busy_for(1ms);  // not a blocking call
            reached = true;
            cogent::sleep(1s);
        } catch (const Timeout&) {
            CHECK(reached);
            reached = false;  // mark: caught
        }
        CHECK_FALSE(reached);
        Event never;
        auto t0 = Clock::now();
        {
            Timeout t(0s);
            CHECK_THROWS_AS(never.wait(), Timeout);
        }
        CHECK(ms_since(t0) < 1000.0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "negative durations are rejected with std::invalid_argument") {
        CHECK_THROWS_AS(Timeout(-1ms), std::invalid_argument);
        CHECK_THROWS_AS(Timeout(std::chrono::duration<double>(-0.5)), std::invalid_argument);
        CHECK_THROWS_AS(cogent::with_timeout(-1s, [] { return 1; }), std::invalid_argument);
        Event ev;
        CHECK_THROWS_AS(ev.wait(-1ms), std::invalid_argument);
        auto g = cogent::spawn([] { return 1; });
        CHECK_THROWS_AS(g.join(-5ms), std::invalid_argument);
        CHECK_THROWS_AS(g.get(-5ms), std::invalid_argument);
        CHECK(g.get() == 1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "fractional durations") {
        auto t0 = Clock::now();
        CHECK_THROWS_AS((Timeout(std::chrono::duration<double>(0.02)), cogent::sleep(2s)), Timeout);
        CHECK(ms_since(t0) >= 20.0);
        Timeout t(std::chrono::duration<double>(0.02));
        CHECK(t.seconds() == doctest::Approx(0.02));
        CHECK(std::string(t.what()).find("0.02") != std::string::npos);
        t.cancel();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "with_timeout and with_timeout_or") {
        CHECK(cogent::with_timeout(
                  1s, [](int a, int b) { return a + b; }, 2, 3) == 5);
        CHECK_THROWS_AS(cogent::with_timeout(20ms,
                                             [] {
                                                 cogent::sleep(5s);
                                                 return 1;
                                             }),
                        Timeout);
        int ran = 0;
        cogent::with_timeout(1s, [&] { ++ran; });  // void functions too
        CHECK(ran == 1);

        CHECK(cogent::with_timeout_or(20ms, -1, [] {
                  cogent::sleep(5s);
                  return 1;
              }) == -1);
        CHECK(cogent::with_timeout_or(1s, -1, [] { return 7; }) == 7);

        // An outer timeout expiring inside with_timeout_or is not turned into the default value.
        bool outer_caught = false;
        {
            Timeout outer(20ms);
            try {
                cogent::with_timeout_or(5s, -1, [] {
                    cogent::sleep(10s);
                    return 1;
                });
            } catch (const Timeout& e) {
                outer_caught = e == outer;
            }
        }
        CHECK(outer_caught);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cancel, pending and start") {
        Timeout t(20ms);
        CHECK(t.pending());
        t.cancel();
        CHECK_FALSE(t.pending());
        t.cancel();  // repeatable
        CHECK_NOTHROW(cogent::sleep(50ms));
        t.start();  // restart from now
        CHECK(t.pending());
        auto t0 = Clock::now();
        CHECK_THROWS_AS(cogent::sleep(5s), Timeout);
        CHECK(ms_since(t0) >= 20.0);
        CHECK_FALSE(t.pending());

        // The thrown copy shares the identity but owns no timer.
        Timeout u(1s);
        Timeout copy(u);
        CHECK(copy == u);
        CHECK_FALSE(copy.pending());
        CHECK(u.pending());
        Timeout v(1s);
        CHECK(v != u);
        // expired(): the form thrown by get(timeout) and friends; never started.
        Timeout e = Timeout::expired(5ms);
        CHECK_FALSE(e.pending());
        CHECK(e != u);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "start() from another greenlet throws GreenletError") {
        Timeout t(1s);
        t.cancel();
        bool refused = false;
        auto g = cogent::spawn([&] {
            try {
                t.start();
            } catch (const cogent::GreenletError&) {
                refused = true;
            }
        });
        g.join();
        t.cancel();
        CHECK(refused);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a Timeout is not caught by catch (const std::exception&)") {
        bool generic = false, specific = false;
        try {
            try {
                Timeout t(10ms);
                cogent::sleep(1s);
            } catch (const std::exception&) {
                generic = true;
            }
        } catch (const Timeout&) {
            specific = true;
        }
        CHECK_FALSE(generic);
        CHECK(specific);
        // Also catchable as the common root of kill and timeout exceptions.
        bool base = false;
        try {
            Timeout t(10ms);
            cogent::sleep(1s);
        } catch (const cogent::BaseException& e) {
            base = std::string(e.what()).find("Timeout") != std::string::npos;
        }
        CHECK(base);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Timeout belongs to the greenlet that made it") {
        Event never;
        bool main_interrupted = false;
        auto g = cogent::spawn([&] {
            return cogent::with_timeout_or(20ms, std::string("timed out"), [&] {
                never.wait();
                return std::string("woken");
            });
        });
        // The main greenlet waits longer than g's timeout and is not interrupted by it.
        try {
            cogent::sleep(60ms);
        } catch (const Timeout&) {
            main_interrupted = true;
        }
        CHECK_FALSE(main_interrupted);
        CHECK(g.dead());
        CHECK(g.get() == "timed out");
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a Timeout inside a greenlet that is killed leaves nothing behind") {
        auto g = cogent::spawn([] {
            Timeout t(50ms);
            cogent::sleep(5s);
        });
        cogent::sleep(0);
        g.kill();
        CHECK(g.killed());
        // Had its timer survived the greenlet, it would fire into freed memory around now.
        CHECK_NOTHROW(cogent::sleep(80ms));
    }

}  // TEST_SUITE
