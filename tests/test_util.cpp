// cogent/util.hpp: the error handler (gevent's Hub.handle_error / print_exception).
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;
using namespace std::chrono_literals;

namespace {

struct Seen {
    cogent::ErrorKind kind;
    std::string where;
    std::string message;
    std::string what;  // the exception's what(), "" if none or not a std::exception
};

std::string what_of(std::exception_ptr e) {
    if (!e) return "";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "?";
    }
}

// Installs a handler that records every report; restores the previous one when destroyed.
struct Recorder {
    std::mutex mu;
    std::vector<Seen> seen;
    cogent::ErrorHandler previous;
    Recorder() {
        previous = cogent::set_error_handler([this](const cogent::ErrorReport& r) {
            std::lock_guard<std::mutex> lk(mu);
            seen.push_back(
                {r.kind, std::string(r.where), std::string(r.message), what_of(r.error)});
        });
    }
    ~Recorder() { cogent::set_error_handler(std::move(previous)); }
    std::vector<Seen> take() {
        std::lock_guard<std::mutex> lk(mu);
        return std::exchange(seen, {});
    }
};

}  // namespace

TEST_SUITE("util") {
    TEST_CASE_FIXTURE(LeakCheck, "a greenlet's failure goes to the error handler, not stderr") {
        StderrCapture cap;
        std::vector<Seen> seen;
        {
            Recorder rec;
            auto g = cogent::spawn({.name = "fetcher"},
                                   [] { throw std::runtime_error("connection refused"); });
            g.join();
            CHECK(g.exception() != nullptr);  // the result is unchanged
            seen = rec.take();
        }
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].kind == cogent::ErrorKind::greenlet);
        CHECK(seen[0].where == "fetcher");
        CHECK(seen[0].what == "connection refused");
        CHECK(seen[0].message ==
              "cogent: fetcher failed with std::runtime_error: connection refused");
        CHECK(cap.text().find("connection refused") == std::string::npos);
    }

    TEST_CASE_FIXTURE(LeakCheck, "callbacks that throw are reported as callbacks") {
        Recorder rec;
        cogent::get_hub().run_callback([] { throw std::logic_error("in a callback"); });
        cogent::Event ev;
        ev.rawlink([](cogent::Event&) { throw std::out_of_range("in a rawlink"); });
        ev.set();
        cogent::sleep(0);
        cogent::sleep(0);
        auto seen = rec.take();
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].kind == cogent::ErrorKind::callback);
        CHECK(seen[0].what == "in a callback");
        CHECK(seen[0].where == "a hub callback");
        CHECK(seen[0].message.find("std::logic_error: in a callback") != std::string::npos);
        CHECK(seen[1].kind == cogent::ErrorKind::callback);
        CHECK(seen[1].what == "in a rawlink");
    }

    TEST_CASE_FIXTURE(LeakCheck, "without a handler the report is one line on stderr") {
        StderrCapture cap;
        auto g = cogent::spawn([] { throw std::runtime_error("to stderr"); });
        g.join();
        const std::string text = cap.text();
        CHECK(text.find(" failed with std::runtime_error: to stderr\n") != std::string::npos);
        CHECK(text.rfind("cogent: Greenlet-", 0) == 0);
    }

    TEST_CASE_FIXTURE(LeakCheck, "set_error_handler returns the previous one; empty restores") {
        std::atomic<int> a{0}, b{0};
        auto prev = cogent::set_error_handler([&](const cogent::ErrorReport&) { ++a; });
        auto mine = cogent::set_error_handler([&](const cogent::ErrorReport&) { ++b; });
        REQUIRE(mine);
        cogent::spawn([] { throw 1; }).join();
        CHECK(a == 0);
        CHECK(b == 1);
        cogent::set_error_handler(std::move(mine));  // back to the first
        cogent::spawn([] { throw 2; }).join();
        CHECK(a == 1);
        auto restored = cogent::set_error_handler(std::move(prev));
        CHECK(restored);
        {
            StderrCapture cap;  // default again: to stderr
            cogent::spawn([] { throw 3; }).join();
            CHECK(cap.text().find("failed with int") != std::string::npos);
        }
        CHECK(a == 1);
        CHECK(b == 1);
    }

    TEST_CASE_FIXTURE(LeakCheck, "a handler that throws falls back to stderr and says so") {
        StderrCapture cap;
        auto prev = cogent::set_error_handler(
            [](const cogent::ErrorReport&) { throw std::runtime_error("handler broke"); });
        cogent::spawn([] { throw std::runtime_error("original"); }).join();
        cogent::set_error_handler(std::move(prev));
        const std::string text = cap.text();
        CHECK(text.find("failed with std::runtime_error: original") != std::string::npos);
        CHECK(
            text.find("the error handler (set_error_handler): std::runtime_error: handler broke") !=
            std::string::npos);
    }

    TEST_CASE("reports from other threads reach the same handler") {
        Recorder rec;
        std::thread t([] {
            cogent::spawn({.name = "worker-greenlet"}, [] {
                throw std::runtime_error("elsewhere");
            }).join();
        });
        t.join();
        auto seen = rec.take();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].where == "worker-greenlet");
        CHECK(seen[0].what == "elsewhere");
    }
}
