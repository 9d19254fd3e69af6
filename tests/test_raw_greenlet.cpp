// Raw greenlets: the semantics of Python's greenlet module (switch, throw, parent, death).
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using cogent::GreenletError;
using cogent::GreenletExit;
using cogent::RawGreenlet;

namespace {}  // namespace

TEST_SUITE("raw_greenlet") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "switch carries values both ways and the return value goes to the parent") {
        RawGreenlet main = RawGreenlet::current();
        std::vector<int> seen;
        RawGreenlet g([&](std::any v) -> std::any {
            seen.push_back(std::any_cast<int>(v));  // 1: the starting value
            std::any back = main.switch_to(std::any_cast<int>(v) + 1);
            seen.push_back(std::any_cast<int>(back));  // 5: carried by main's second switch
            return std::string("done-") + std::to_string(std::any_cast<int>(back));
        });
        CHECK_FALSE(g.started());
        std::any r1 = g.switch_to(1);
        REQUIRE(r1.type() == typeid(int));
        CHECK(std::any_cast<int>(r1) == 2);
        CHECK(g.active());
        std::any r2 = g.switch_to(5);
        REQUIRE(r2.type() == typeid(std::string));
        CHECK(std::any_cast<std::string>(r2) == "done-5");
        CHECK(seen == std::vector<int>{1, 5});
        CHECK(g.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "ping-pong between two greenlets") {
        RawGreenlet a, b;
        std::vector<int> log;
        a = RawGreenlet([&](std::any v) -> std::any {
            int x = std::any_cast<int>(v);
            for (int i = 0; i < 3; ++i) {
                log.push_back(x);
                x = std::any_cast<int>(b.switch_to(x + 1));
            }
            return x * 100;
        });
        b = RawGreenlet([&](std::any v) -> std::any {
            int x = std::any_cast<int>(v);
            for (;;) {
                log.push_back(x);
                x = std::any_cast<int>(a.switch_to(x + 1));
            }
        });
        std::any r = a.switch_to(1);
        CHECK(std::any_cast<int>(r) == 700);
        CHECK(log == std::vector<int>{1, 2, 3, 4, 5, 6});
        CHECK(a.dead());
        CHECK(b.active());
        b.kill_now();  // b loops forever: unwind it (GreenletExit is a normal end)
        CHECK(b.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "callables without argument or result are accepted") {
        int calls = 0;
        RawGreenlet g([&] { ++calls; });
        std::any r = g.switch_to();
        CHECK(calls == 1);
        CHECK_FALSE(r.has_value());
        RawGreenlet h([] { return 42; });
        CHECK(std::any_cast<int>(h.switch_to()) == 42);
        CHECK_THROWS_AS(RawGreenlet(RawGreenlet::Function{}), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "an exception escaping the child is raised in the parent") {
        RawGreenlet g([](std::any) -> std::any { throw std::runtime_error("child failed"); });
        bool caught = false;
        try {
            g.switch_to();
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "child failed";
        }
        CHECK(caught);
        CHECK(g.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "the exception goes to the parent, not to the switcher") {
        // main -> p -> c, where c's parent is main: c's failure surfaces in main, not in p.
        RawGreenlet main = RawGreenlet::current();
        bool p_saw_exception = false;
        RawGreenlet c([](std::any) -> std::any { throw std::logic_error("from c"); }, main);
        RawGreenlet p([&](std::any) -> std::any {
            try {
                c.switch_to();
            } catch (...) {
                p_saw_exception = true;
            }
            return 1;
        });
        CHECK_THROWS_AS(p.switch_to(), std::logic_error);
        CHECK_FALSE(p_saw_exception);
        CHECK(c.dead());
        CHECK(p.active());
        p.kill_now();
        CHECK(p.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "GreenletExit is a normal end: the parent receives it as the value") {
        RawGreenlet g([](std::any) -> std::any { throw GreenletExit("bye"); });
        std::any r;
        CHECK_NOTHROW(r = g.switch_to());
        REQUIRE(r.type() == typeid(GreenletExit));
        CHECK(std::string(std::any_cast<GreenletExit&>(r).what()) == "bye");
        CHECK(g.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "throw_exception into a suspended greenlet raises at its suspension point") {
        RawGreenlet main = RawGreenlet::current();
        bool unwound = false;
        std::string caught;
        RawGreenlet g([&](std::any) -> std::any {
            SetOnDestroy guard{&unwound};
            try {
                main.switch_to(std::string("suspended"));
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
            return 7;
        });
        CHECK(std::any_cast<std::string>(g.switch_to()) == "suspended");
        std::any r = g.throw_exception(std::runtime_error("injected"));
        CHECK(caught == "injected");
        CHECK(std::any_cast<int>(r) == 7);
        CHECK(unwound);
        CHECK(g.dead());
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "an uncaught thrown exception propagates to the parent; GreenletExit ends it quietly") {
        RawGreenlet main = RawGreenlet::current();
        bool unwound1 = false, unwound2 = false;
        RawGreenlet g1([&](std::any) -> std::any {
            SetOnDestroy guard{&unwound1};
            main.switch_to();
            return 1;
        });
        g1.switch_to();
        CHECK_THROWS_AS(g1.throw_exception(std::out_of_range("x")), std::out_of_range);
        CHECK(unwound1);
        CHECK(g1.dead());

        RawGreenlet g2([&](std::any) -> std::any {
            SetOnDestroy guard{&unwound2};
            main.switch_to();
            return 1;
        });
        g2.switch_to();
        std::any r = g2.throw_exception(GreenletExit());
        CHECK(r.type() == typeid(GreenletExit));
        CHECK(unwound2);
        CHECK(g2.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "throw_exception into an unstarted greenlet: its function never runs") {
        bool ran = false;
        RawGreenlet g([&](std::any) -> std::any {
            ran = true;
            return 1;
        });
        CHECK_THROWS_AS(g.throw_exception(std::runtime_error("before start")), std::runtime_error);
        CHECK_FALSE(ran);
        CHECK(g.dead());

        RawGreenlet h([&](std::any) -> std::any {
            ran = true;
            return 1;
        });
        std::any r = h.throw_exception(GreenletExit());
        CHECK(r.type() == typeid(GreenletExit));
        CHECK_FALSE(ran);
        CHECK(h.dead());
        CHECK_THROWS_AS(h.throw_exception(std::exception_ptr{}), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "dead, started and active through a greenlet's life") {
        RawGreenlet main = RawGreenlet::current();
        bool active_inside = false, is_current_inside = false;
        RawGreenlet g;
        g = RawGreenlet([&](std::any) -> std::any {
            active_inside = g.active();
            is_current_inside = RawGreenlet::current() == g;
            main.switch_to();
            return {};
        });
        CHECK_FALSE(g.started());
        CHECK_FALSE(g.active());
        CHECK_FALSE(g.dead());
        g.switch_to();
        CHECK(active_inside);
        CHECK(is_current_inside);
        CHECK(g.started());
        CHECK(g.active());
        CHECK_FALSE(g.dead());
        CHECK(RawGreenlet::current() == main);
        g.switch_to();
        CHECK(g.dead());
        CHECK_FALSE(g.active());
        CHECK(main.is_main());
        CHECK(main.active());
        CHECK_FALSE(g.is_main());
        CHECK(main.describe() == "<main greenlet>");
        CHECK(cogent::getcurrent() == main);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "switching to a dead greenlet goes to its nearest live ancestor") {
        RawGreenlet main = RawGreenlet::current();
        RawGreenlet child;
        RawGreenlet p([&](std::any) -> std::any {
            child = RawGreenlet([](std::any) -> std::any { return 7; });  // parent: p
            int from_child = std::any_cast<int>(child.switch_to());
            CHECK(from_child == 7);
            CHECK(child.dead());
            // Suspend p; main then switches to the dead child, which must land here.
            std::any v = main.switch_to(std::string("p suspended"));
            return std::any_cast<int>(v) + 1;
        });
        CHECK(std::any_cast<std::string>(p.switch_to()) == "p suspended");
        REQUIRE(child.dead());
        CHECK(child.parent() == p);
        std::any r = child.switch_to(42);  // lands in p's pending switch
        CHECK(std::any_cast<int>(r) == 43);
        CHECK(p.dead());

        // Both the child and its parent dead: the switch goes on up to main (the caller itself),
        // which simply gets the value back.
        std::any same = child.switch_to(5);
        CHECK(std::any_cast<int>(same) == 5);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "parent() and set_parent") {
        RawGreenlet main = RawGreenlet::current();
        CHECK_FALSE(main.parent());
        RawGreenlet a([](std::any v) -> std::any { return v; });
        CHECK(a.parent() == main);

        // Re-parent a to b: a's return value goes to b's pending switch.
        std::string b_got;
        RawGreenlet b;
        b = RawGreenlet([&](std::any) -> std::any {
            std::any r = a.switch_to(std::string("to a"));
            b_got = std::any_cast<std::string>(r);
            return std::string("b done");
        });
        a.set_parent(b);
        CHECK(a.parent() == b);
        std::any r = b.switch_to();
        CHECK(b_got == "to a");
        CHECK(std::any_cast<std::string>(r) == "b done");
        CHECK(a.dead());
        CHECK(b.dead());

        // Cycles are rejected, including a greenlet as its own parent.
        RawGreenlet x([] {});
        RawGreenlet y([] {}, x);
        RawGreenlet z([] {}, y);
        CHECK_THROWS_AS(x.set_parent(z), std::invalid_argument);
        CHECK_THROWS_AS(x.set_parent(x), std::invalid_argument);
        CHECK(x.parent() == main);  // unchanged by the failed calls
        CHECK_THROWS_AS(main.set_parent(x), GreenletError);
        CHECK_THROWS_AS(x.set_parent(RawGreenlet{}), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "greenlets of another std::thread cannot be switched to or adopted") {
        std::mutex mu;
        std::condition_variable cv;
        int phase = 0;  // 1: foreign greenlet published; 2: main is done with it
        RawGreenlet foreign;
        std::thread t([&] {
            RawGreenlet g([] { return 1; });
            {
                std::lock_guard lk(mu);
                foreign = g;
                phase = 1;
            }
            cv.notify_all();
            std::unique_lock lk(mu);
            cv.wait(lk, [&] { return phase == 2; });
            CHECK_FALSE(g.started());
        });
        {
            std::unique_lock lk(mu);
            cv.wait(lk, [&] { return phase == 1; });
        }
        CHECK_THROWS_AS(foreign.switch_to(1), GreenletError);
        CHECK_THROWS_AS(foreign.throw_exception(std::runtime_error("x")), GreenletError);
        CHECK_THROWS_AS(RawGreenlet([] {}, foreign), GreenletError);
        RawGreenlet local([] {});
        CHECK_THROWS_AS(local.set_parent(foreign), GreenletError);
        {
            std::lock_guard lk(mu);
            foreign = RawGreenlet{};  // drop our handle while its thread still lives
            phase = 2;
        }
        cv.notify_all();
        t.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "errno is preserved across switches") {
        RawGreenlet main = RawGreenlet::current();
        int seen_in_child = -1;
        RawGreenlet g([&](std::any) -> std::any {
            errno = 77;
            main.switch_to();
            seen_in_child = errno;  // main set errno to something else meanwhile
            return {};
        });
        errno = 1234;
        g.switch_to();
        CHECK(errno == 1234);
        errno = 99;
        g.switch_to();
        CHECK(seen_in_child == 77);
        CHECK(errno == 99);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "kill_now unwinds a suspended greenlet and ignores unstarted or dead ones") {
        RawGreenlet main = RawGreenlet::current();
        bool unwound = false;
        bool ran = false;
        RawGreenlet g([&](std::any) -> std::any {
            SetOnDestroy guard{&unwound};
            main.switch_to();
            ran = true;
            return {};
        });
        g.switch_to();
        g.kill_now();
        CHECK(unwound);
        CHECK_FALSE(ran);
        CHECK(g.dead());
        CHECK_NOTHROW(g.kill_now());
        RawGreenlet u([&] { ran = true; });
        CHECK_NOTHROW(u.kill_now());
        CHECK_FALSE(u.started());
        CHECK_FALSE(ran);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "null handles are rejected") {
        RawGreenlet null;
        CHECK_FALSE(null);
        CHECK_THROWS_AS(null.switch_to(), std::invalid_argument);
        CHECK_THROWS_AS(null.throw_exception(std::runtime_error("x")), std::invalid_argument);
        CHECK(null.describe() == "<null greenlet>");
    }

}  // TEST_SUITE
