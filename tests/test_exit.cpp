// Ending a program or a thread whose greenlets are still busy, and the hub's messages: the
// exit hang and the "Smaller" items of issue 12 (throwing into the hub, link callbacks named).
#include <sys/wait.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "support.hpp"

using namespace cogent_test;  // run_child, child_path, StderrCapture, LeakCheck, ms_since

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// child_teardown with `args`, killed after 60 s if it hangs (the bug this file is about).
ChildResult run_teardown(const std::string& args, double* seconds, bool leaks = false) {
    std::string cmd;
    // A child that leaks a stubborn greenlet on purpose must not fail LeakSanitizer's check.
    if (leaks) cmd = "env ASAN_OPTIONS=\"${ASAN_OPTIONS}:detect_leaks=0\" ";
    cmd += "timeout -s KILL 60 " + child_path("COGENT_CHILD_TEARDOWN") + " " + args;
    auto t0 = Clock::now();
    ChildResult r = run_child(cmd);
    *seconds = ms_since(t0) / 1000.0;
    return r;
}

}  // namespace

TEST_SUITE("exit") {
    TEST_CASE("a program with a periodic greenlet exits when main returns") {
        for (const char* period : {"100", "1000"}) {
            CAPTURE(period);
            double s = 0;
            auto r = run_teardown(std::string("periodic ") + period, &s);
            INFO("output: " << r.output);
            REQUIRE(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 0);  // 137: killed by the timeout, it hung
            CHECK(contains(r.output, "main returning"));
            CHECK(contains(r.output, "ticker unwound"));  // unwound, not just abandoned
            CHECK(r.output.find("main returning") < r.output.find("ticker unwound"));
            CHECK_FALSE(contains(r.output, "leaked"));
            CHECK(s < 10);
        }
    }

    TEST_CASE("a thread with a periodic greenlet ends, and join() of it returns") {
        double s = 0;
        auto r = run_teardown("thread 100", &s);
        INFO("output: " << r.output);
        REQUIRE(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(contains(r.output, "ticker unwound"));
        CHECK(contains(r.output, "thread joined"));
        CHECK(r.output.find("ticker unwound") < r.output.find("thread joined"));
        CHECK(s < 10);
    }

    TEST_CASE(
        "a greenlet that swallows GreenletExit is reported and leaked; the program still exits") {
        double s = 0;
        auto r = run_teardown("stubborn", &s, /*leaks=*/true);
        INFO("output: " << r.output);
        REQUIRE(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(contains(r.output, "stubborn greenlet caught GreenletExit"));
        CHECK(contains(r.output, "ticker unwound"));  // the others are unwound all the same
        CHECK(contains(r.output, "1 greenlet(s) would not exit at thread exit"));
        CHECK(contains(r.output, "leaked: stubborn"));
        CHECK(s >= 1.5);  // its cleanups were given their time (about 2 s)...
        CHECK(s < 15);    // ...and no more
    }

    TEST_CASE("an unwound greenlet whose cleanup blocks is run to its end by the hub") {
        double s = 0;
        auto r = run_teardown("blocking-cleanup", &s);
        INFO("output: " << r.output);
        REQUIRE(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(contains(r.output, "blocking cleanup finished"));
        CHECK_FALSE(contains(r.output, "leaked"));
        CHECK(s < 10);
    }

    TEST_CASE_FIXTURE(LeakCheck, "throwing into the hub or killing it is refused, naming the hub") {
        StderrCapture cap;
        auto g = cogent::spawn([] {
            cogent::RawGreenlet hub = cogent::getcurrent().parent();
            std::string out;
            try {
                hub.throw_exception(std::runtime_error("into the hub"));
                out += "no error;";
            } catch (const cogent::GreenletError& e) {
                out += std::string(e.what()) + ";";
            }
            try {
                hub.kill_now();
                out += "no error;";
            } catch (const cogent::GreenletError& e) {
                out += std::string(e.what()) + ";";
            }
            // A plain switch to the hub is still a yield that something must undo: the hub
            // carries on, and a callback switches back.
            cogent::RawGreenlet me = cogent::getcurrent();
            cogent::get_hub().run_callback([me]() mutable { me.switch_to(); });
            hub.switch_to();
            return out + "switched back";
        });
        const std::string out = g.get();
        INFO(out);
        CHECK(contains(out, "cogent: cannot throw an exception into (or kill) <Hub of thread"));
        CHECK(out.find("<Hub of thread") != out.rfind("<Hub of thread"));  // both refused
        CHECK_FALSE(contains(out, "no error"));
        CHECK(contains(out, "switched back"));
        const std::string err = cap.text();
        CHECK_FALSE(contains(err, "whose parent is the hub"));
        CHECK_FALSE(contains(err, "into the hub"));
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "a throwing link callback is reported as a link callback of its greenlet") {
        StderrCapture cap;
        auto g = cogent::spawn([] {});
        g.set_name("linked-one");
        g.link([](cogent::AnyGreenlet) { throw std::runtime_error("link went wrong"); });
        g.join();
        for (int i = 0; i < 5; ++i) cogent::sleep(0);  // the link callback runs in a greenlet
        const std::string err = cap.text();
        INFO(err);
        CHECK(contains(err, "cogent: link callback of linked-one failed with"));
        CHECK(contains(err, "link went wrong"));
    }

}  // TEST_SUITE
