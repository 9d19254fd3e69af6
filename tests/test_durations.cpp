// Durations longer than the clock can express (issue 12): they mean "forever" (saturated to
// Duration::max(), about 292 years), never "now"; NaN is rejected with a clear error. Each
// blocking case is checked the same way: the call runs in a greenlet of its own, which must
// still be blocked a while later, and is then killed.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cogent/cogent.hpp>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent::Duration;
using cogent_test::ms_since;

namespace {

using clock_type = std::chrono::steady_clock;
using years = std::chrono::years;
const double nan_v = std::numeric_limits<double>::quiet_NaN();

// fn() is still blocked 60 ms after it started (it neither returned nor threw); then it is
// killed, and dies of that kill.
void check_blocks(const std::string& what, std::function<void()> fn) {
    INFO(what);
    bool returned = false;
    bool threw = false;
    auto g = cogent::spawn([&] {
        try {
            fn();
            returned = true;
        } catch (const cogent::GreenletExit&) {
            throw;
        } catch (...) {
            threw = true;
        }
    });
    cogent::sleep(60ms);
    CHECK_FALSE(returned);
    CHECK_FALSE(threw);
    CHECK_FALSE(g.dead());
    g.kill();
    CHECK(g.dead());
}

// The invalid_argument fn() throws, as text ("" if none).
std::string invalid(std::function<void()> fn) {
    try {
        fn();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "sleep of a duration too long for the clock blocks") {
    check_blocks("sleep(years(1000))", [] { cogent::sleep(years(1000)); });
    check_blocks("sleep(seconds::max())", [] { cogent::sleep(std::chrono::seconds::max()); });
    check_blocks("sleep(hours::max())", [] { cogent::sleep(std::chrono::hours::max()); });
    check_blocks("sleep(milliseconds::max())",
                 [] { cogent::sleep(std::chrono::milliseconds::max()); });
    check_blocks("sleep(nanoseconds::max())", [] { cogent::sleep(Duration::max()); });
    check_blocks("sleep(duration<double>(1e300))",
                 [] { cogent::sleep(std::chrono::duration<double>(1e300)); });
    check_blocks("sleep(duration<float, hours>(inf))", [] {
        cogent::sleep(
            std::chrono::duration<float, std::ratio<3600>>(std::numeric_limits<float>::infinity()));
    });
    check_blocks("sleep(1e12)", [] { cogent::sleep(1e12); });
    check_blocks("sleep(9.3e9)", [] { cogent::sleep(9.3e9); });
    check_blocks("sleep(HUGE_VAL)", [] { cogent::sleep(HUGE_VAL); });
    check_blocks("sleep(years(1000), ref=false)", [] { cogent::sleep(years(1000), false); });
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "waits with a huge timeout block") {
    cogent::Event ev;
    check_blocks("Event::wait(hours::max())", [&] { ev.wait(std::chrono::hours::max()); });
    check_blocks("Event::wait(years(1000))", [&] { ev.wait(years(1000)); });
    check_blocks("Event::wait(duration<double>(inf))", [&] {
        ev.wait(std::chrono::duration<double>(std::numeric_limits<double>::infinity()));
    });
    cogent::Queue<int> q;
    check_blocks("Queue::get(years(1000))", [&] { q.get(years(1000)); });
    cogent::AsyncResult<int> ar;
    check_blocks("AsyncResult::get(seconds::max())", [&] { ar.get(std::chrono::seconds::max()); });
    cogent::Semaphore sem(0);
    check_blocks("Semaphore::acquire(hours::max())",
                 [&] { sem.acquire(true, std::chrono::hours::max()); });
    auto sleeper = cogent::spawn([] { cogent::sleep(years(1000)); });
    check_blocks("Greenlet::join(years(1000))", [&] { sleeper.join(years(1000)); });
    check_blocks("wait({ev}, years(1000))", [&] {
        cogent::wait(std::vector<cogent::Event*>{&ev}, std::chrono::hours::max());
    });
    cogent::Lock lock;
    cogent::Condition cond(lock);
    check_blocks("Condition::wait_for(pred, hours::max())", [&] {
        std::unique_lock lk(cond);
        cond.wait_for([] { return false; }, std::chrono::hours::max());
    });
    check_blocks("Condition::wait(years(1000))", [&] {
        std::unique_lock lk(cond);
        cond.wait(years(1000));
    });
    sleeper.kill();
    // And they still return when woken.
    auto waiter = cogent::spawn([&] { return ev.wait(years(1000)); });
    cogent::sleep(10ms);
    ev.set();
    CHECK(waiter.get());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Timeout too long for the clock never fires") {
    for (cogent::TimeoutArg d :
         {cogent::TimeoutArg(years(1000)), cogent::TimeoutArg(std::chrono::hours::max()),
          cogent::TimeoutArg(std::chrono::duration<double>(1e300))}) {
        cogent::Timeout t(d);
        CHECK(t.pending());
        CHECK(t.seconds() > 9e9);  // not a wrapped-around negative
        auto t0 = clock_type::now();
        CHECK_NOTHROW(cogent::sleep(40ms));
        CHECK(ms_since(t0) >= 35);
        CHECK(t.pending());
    }
    CHECK(cogent::with_timeout(years(1000), [] {
              cogent::sleep(20ms);
              return 7;
          }) == 7);
    check_blocks("a greenlet under Timeout(years(1000)) on an Event", [] {
        cogent::Event ev;
        cogent::Timeout t(years(1000));
        ev.wait();
    });
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawn_later and Timer with a huge delay never start") {
    bool ran = false;
    auto g = cogent::spawn_later(years(1000), [&] { ran = true; });
    cogent::Timer t1(std::chrono::seconds::max(), [&] { ran = true; });
    cogent::Timer t2(1e12, [&] { ran = true; });
    cogent::Timer t3(HUGE_VAL, [&] { ran = true; });
    cogent::sleep(60ms);
    CHECK_FALSE(ran);
    CHECK_FALSE(g.dead());
    CHECK(t1.pending());
    CHECK(t2.pending());
    CHECK(t3.pending());
    g.kill();
    CHECK(t1.cancel());
    CHECK(t2.cancel());
    CHECK(t3.cancel());
    CHECK_FALSE(ran);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "TimeoutArg saturates and rounds up") {
    CHECK(cogent::TimeoutArg(years(1000)).value() == Duration::max());
    CHECK(cogent::TimeoutArg(std::chrono::seconds::max()).value() == Duration::max());
    CHECK(cogent::TimeoutArg(std::chrono::duration<double>(HUGE_VAL)).value() == Duration::max());
    CHECK(cogent::TimeoutArg(std::chrono::duration<double>(9.3e9)).value() == Duration::max());
    // Just inside the range: exact.
    CHECK(cogent::TimeoutArg(std::chrono::seconds(9'000'000'000)).value() ==
          std::chrono::seconds(9'000'000'000));
    CHECK(cogent::TimeoutArg(std::chrono::microseconds(1500)).value() == 1500us);
    // A tiny positive duration is never "do not block".
    CHECK(cogent::TimeoutArg(std::chrono::duration<double>(1e-12)).value() == 1ns);
    CHECK(cogent::TimeoutArg(std::chrono::duration<long long, std::pico>(1)).value() == 1ns);
    CHECK(cogent::TimeoutArg(std::chrono::duration<double, std::micro>(1.0001)).value() == 1001ns);
    CHECK(cogent::TimeoutArg(0s).zero());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "NaN durations are rejected with a clear error") {
    const auto nan_s = std::chrono::duration<double>(nan_v);
    CHECK(invalid([] { cogent::sleep(nan_v); }) == "cogent: sleep: the duration is NaN");
    CHECK(invalid([&] { cogent::sleep(nan_s); }) == "cogent: sleep: the duration is NaN");
    cogent::Event ev;
    // A timeout names the place of the call.
    std::string m = invalid([&] { ev.wait(nan_s); });
    CHECK(m.find("cogent: timeout at ") == 0);
    CHECK(m.find("test_durations.cpp:") != std::string::npos);
    CHECK(m.find("the duration is NaN") != std::string::npos);
    CHECK(invalid([&] { cogent::Timeout t(nan_s); }).find("NaN") != std::string::npos);
    CHECK(invalid([&] { cogent::Timer t(nan_v, [] {}); }) ==
          "cogent: Timer delay: the duration is NaN");
    CHECK(invalid([&] { cogent::spawn_later(nan_s, [] {}); }).find("NaN") != std::string::npos);
    // A negative timeout names the place too.
    m = invalid([&] { ev.wait(-1s); });
    CHECK(m.find("must not be negative") != std::string::npos);
    CHECK(m.find("test_durations.cpp:") != std::string::npos);
    // The waits were never entered: nothing is left behind (LeakCheck).
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a ThreadPool with a huge idle timeout keeps its worker") {
    cogent::ThreadPool pool(1, cogent::ThreadPoolOptions{.idle_timeout = years(1000)});
    CHECK(pool.idle_timeout().value() == Duration::max());
    pool.apply([] {});
    cogent::sleep(100ms);
    CHECK(pool.size() == 1);  // before: the worker retired at once
    CHECK(pool.idle_count() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "std lock waits with extreme times") {
    cogent::Lock lock;
    lock.acquire();
    auto t0 = clock_type::now();
    bool got = true;
    auto g = cogent::spawn([&] { got = lock.try_lock_until(clock_type::time_point::min()); });
    g.join(1s);
    CHECK(g.dead());  // before: min() - now() wrapped to a huge wait
    CHECK_FALSE(got);
    CHECK(ms_since(t0) < 500);
    check_blocks("try_lock_for(hours::max())",
                 [&] { (void)lock.try_lock_for(std::chrono::hours::max()); });
    check_blocks("try_lock_until(time_point::max())",
                 [&] { (void)lock.try_lock_until(clock_type::time_point::max()); });
    lock.release();
}
