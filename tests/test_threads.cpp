// One hub per OS thread; greenlets in several threads at once; unwinding of suspended
// greenlets at thread exit and at process exit.
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::Event;
using Clock = std::chrono::steady_clock;

namespace {}  // namespace

TEST_SUITE("threads") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "each std::thread gets its own hub") {
        constexpr int kThreads = 4;
        std::mutex mu;
        std::set<std::uint64_t> indexes;
        std::latch all_have_hubs(kThreads);
        std::vector<std::thread> ts;
        for (int i = 0; i < kThreads; ++i)
            ts.emplace_back([&] {
                auto hub = cogent::get_hub();
                CHECK(hub.is_current_thread());
                {
                    std::lock_guard lk(mu);
                    indexes.insert(hub.index());
                }
                // Keep every hub alive at the same time so the indexes are of distinct live hubs.
                all_have_hubs.arrive_and_wait();
            });
        for (auto& t : ts) t.join();
        indexes.insert(cogent::get_hub().index());
        CHECK(indexes.size() == kThreads + 1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "greenlets run in several threads at once") {
        constexpr int kThreads = 4, kGreenlets = 100, kSteps = 10;
        std::latch all_running(kThreads);
        std::atomic<int> total{0};
        std::atomic<int> failures{0};
        std::vector<std::thread> ts;
        for (int i = 0; i < kThreads; ++i)
            ts.emplace_back([&] {
                int count = 0;  // this thread's greenlets only
                std::vector<cogent::Greenlet<int>> gs;
                for (int k = 0; k < kGreenlets; ++k)
                    gs.push_back(cogent::spawn([&count, k] {
                        for (int s = 0; s < kSteps; ++s) {
                            cogent::sleep(1ms);
                            ++count;
                        }
                        return k;
                    }));
                cogent::sleep(0);  // all started and parked in sleep()
                if (cogent::debug::live_greenlets() != std::size_t(kGreenlets)) ++failures;
                all_running.arrive_and_wait();  // every thread has live greenlets now
                auto done = cogent::joinall(gs);
                if (done.size() != std::size_t(kGreenlets)) ++failures;
                for (int k = 0; k < kGreenlets; ++k)
                    if (gs[std::size_t(k)].get() != k) ++failures;
                if (cogent::debug::live_greenlets() != 0) ++failures;
                total += count;
            });
        for (auto& t : ts) t.join();
        CHECK(failures == 0);
        CHECK(total == kThreads * kGreenlets * kSteps);
        CHECK(cogent::debug::live_greenlets() == 0);  // per-thread: none of theirs counted here
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "run_callback_threadsafe wakes another thread's hub") {
        std::latch published(1);
        std::optional<cogent::Hub> remote_hub;
        Event* remote_event = nullptr;
        std::atomic<bool> woke{false};
        std::thread::id waiter_thread, callback_thread;
        std::thread t([&] {
            Event ev;  // lives here until the callback that sets it has run (before wait returns)
            remote_hub = cogent::get_hub();
            remote_event = &ev;
            waiter_thread = std::this_thread::get_id();
            published.count_down();
            woke = ev.wait(10s);
        });
        published.wait();
        auto t0 = Clock::now();
        remote_hub->run_callback_threadsafe([ev = remote_event, &callback_thread] {
            callback_thread = std::this_thread::get_id();
            ev->set();
        });
        t.join();
        CHECK(woke);
        CHECK(ms_since(t0) < 5000.0);
        CHECK(callback_thread == waiter_thread);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a greenlet of another thread cannot be started from here") {
        std::latch published(1), done(1);
        std::optional<cogent::Greenlet<int>> foreign;
        std::thread t([&] {
            foreign = cogent::make_greenlet([] { return 1; });
            published.count_down();
            done.wait();
            foreign.reset();  // dropped on its own thread
        });
        published.wait();
        CHECK_THROWS_AS(foreign->start(), cogent::GreenletError);
        CHECK_THROWS_AS(foreign->start_later(1ms), cogent::GreenletError);
        CHECK_THROWS_AS(foreign->raw().switch_to(), cogent::GreenletError);
        done.count_down();
        t.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "at thread exit, suspended greenlets are unwound") {
        std::atomic<bool> event_waiter{false}, sleeper{false}, raw{false}, unstarted_ran{false};
        std::atomic<bool> after_wait{false};
        std::atomic<std::size_t> live_before_exit{0};
        auto t0 = Clock::now();
        std::thread t([&] {
            static thread_local Event never;  // outlives the greenlets that wait on it
            cogent::spawn([&] {
                SetOnDestroy d{&event_waiter};
                never.wait();
                after_wait = true;
            });
            cogent::spawn([&] {
                SetOnDestroy d{&sleeper};
                cogent::sleep(30s);
            });
            cogent::RawGreenlet main = cogent::getcurrent();
            cogent::RawGreenlet r([&raw, main](std::any) mutable -> std::any {
                SetOnDestroy d{&raw};
                main.switch_to();
                return {};
            });
            r.switch_to();
            cogent::sleep(0);
            // Scheduled but never run before the thread ends.
            cogent::spawn([&] { unstarted_ran = true; });
            live_before_exit = cogent::debug::live_greenlets();
        });
        t.join();
        double ms = ms_since(t0);
        CHECK(live_before_exit == 3);
        CHECK(event_waiter);
        CHECK(sleeper);
        CHECK(raw);
        CHECK_FALSE(after_wait);
        CHECK(ms < 5000.0);   // the 30 s sleep did not hold the thread up
        (void)unstarted_ran;  // gevent leaves this unspecified; only the unwinding is asserted
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "threads that use greenlets leave no file descriptor behind") {
        // LeakCheck compares fd counts around the test: each thread's hub (its epoll and eventfd)
        // must be closed when the thread ends.
        for (int i = 0; i < 3; ++i) {
            std::thread t([] {
                auto g = cogent::spawn([] {
                    cogent::sleep(1ms);
                    return 1;
                });
                CHECK(g.get() == 1);
            });
            t.join();
        }
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "at process exit, suspended greenlets are unwound") {
        std::string child = child_path("COGENT_CHILD_EXIT");
        {
            auto r = run_child(child + " return");
            INFO("output: " << r.output);
            REQUIRE(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 0);
            auto main_done = r.output.find("main returning");
            auto unwound = r.output.find("spawned greenlet unwound at exit");
            auto raw_unwound = r.output.find("raw greenlet unwound at exit");
            CHECK(main_done != std::string::npos);
            CHECK(unwound != std::string::npos);
            CHECK(raw_unwound != std::string::npos);
            CHECK(unwound > main_done);
            CHECK(raw_unwound > main_done);
        }
        {
            auto r = run_child(child + " exit");
            INFO("output: " << r.output);
            REQUIRE(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 3);
            CHECK(r.output.find("spawned greenlet unwound at exit") != std::string::npos);
            CHECK(r.output.find("raw greenlet unwound at exit") != std::string::npos);
        }
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "exit() called from inside a greenlet ends the process cleanly") {
        // It cannot unwind the stack it runs on ("suspended greenlets are not unwound"), but it
        // must still end the process with the requested status, without crashing.
        std::string child = child_path("COGENT_CHILD_EXIT");
        {
            auto r = run_child(child + " exit-in-greenlet");
            INFO("output: " << r.output);
            REQUIRE(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 4);
            CHECK(r.output.find("exiting from a greenlet") != std::string::npos);
            CHECK(r.output.find("not reached") == std::string::npos);
        }
    }

}  // TEST_SUITE
