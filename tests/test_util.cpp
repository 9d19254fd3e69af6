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

// ---- run info ----

namespace {

// Each greenlet parks in a different wait from a function of its own (never inlined), whose
// name run info must show among the greenlet's frames.
[[gnu::noinline]] void park_marker_event(cogent::Event& e) {
    e.wait();
    asm volatile("");
}
[[gnu::noinline]] void park_marker_sleep() {
    cogent::sleep(30s);
    asm volatile("");
}
[[gnu::noinline]] void park_marker_queue(cogent::Queue<int>& q) {
    (void)q.get();
    asm volatile("");
}
[[gnu::noinline]] void park_marker_lock(cogent::Lock& l) {
    l.acquire();
    l.release();
    asm volatile("");
}
[[gnu::noinline]] void park_marker_result(cogent::AsyncResult<int>& r) {
    (void)r.get();
    asm volatile("");
}
[[gnu::noinline]] void park_marker_recv(cogent::Socket& s) {
    char c;
    (void)s.recv(&c, 1);
    asm volatile("");
}
[[gnu::noinline]] void park_marker_join(cogent::Greenlet<void>& g) {
    g.join();
    asm volatile("");
}

// The block of lines run info prints for greenlet `name`: its line and its frames.
std::string block_of(const std::string& info, const std::string& name) {
    const std::size_t at = info.find(" " + name + ": ");
    if (at == std::string::npos) return {};
    const std::size_t line_start = info.rfind('\n', at) + 1;
    // The block ends at the next line that is not a frame (frames are indented deeper, with #).
    std::size_t end = info.find('\n', at);
    while (end != std::string::npos) {
        const std::size_t next = end + 1;
        const std::size_t hash = info.find_first_not_of(' ', next);
        if (hash == std::string::npos || (info[hash] != '#' && info.compare(hash, 3, "...") != 0))
            break;
        end = info.find('\n', next);
    }
    return info.substr(line_start, end == std::string::npos ? std::string::npos : end - line_start);
}

}  // namespace

TEST_SUITE("run_info") {
    TEST_CASE_FIXTURE(LeakCheck, "every greenlet, its wait and the function that parked it") {
        cogent::Event ev;
        cogent::Queue<int> q;
        cogent::Lock lock;
        cogent::AsyncResult<int> result;
        auto [a, b] = cogent::Socket::pair();
        lock.acquire();
        auto sleeper = cogent::spawn({.name = "sleeper"}, [] { park_marker_sleep(); });
        std::vector<cogent::Greenlet<void>> gs;
        gs.push_back(cogent::spawn({.name = "on-event"}, [&] { park_marker_event(ev); }));
        gs.push_back(cogent::spawn({.name = "on-queue"}, [&] { park_marker_queue(q); }));
        gs.push_back(cogent::spawn({.name = "on-lock"}, [&] { park_marker_lock(lock); }));
        gs.push_back(cogent::spawn({.name = "on-result"}, [&] { park_marker_result(result); }));
        gs.push_back(cogent::spawn({.name = "on-recv"}, [&, &b = b] { park_marker_recv(b); }));
        // A greenlet that spawns another and joins it: the tree shows the child under it.
        gs.push_back(cogent::spawn({.name = "parent"}, [&] {
            auto child = cogent::spawn({.name = "child"}, [&] { park_marker_event(ev); });
            park_marker_join(child);
        }));
        cogent::sleep(0);
        cogent::sleep(0);
        auto not_started = cogent::spawn({.name = "not-yet"}, [] {});

        const std::string info = cogent::format_run_info();
        INFO(info);
        CHECK(info.rfind("=== cogent run info: pid ", 0) == 0);
        CHECK(info.find("(this thread)") != std::string::npos);
        CHECK(info.find("=== end of run info ===") != std::string::npos);
        struct Want {
            const char* name;
            const char* wait;
            const char* marker;
        } wants[] = {
            {"sleeper", "parked in sleep()", "park_marker_sleep"},
            {"on-event", "parked in Event::wait", "park_marker_event"},
            {"on-queue", "parked in Queue::get", "park_marker_queue"},
            {"on-lock", "parked in ", "park_marker_lock"},
            {"on-result", "parked in AsyncResult", "park_marker_result"},
            {"on-recv", "(reading fd ", "park_marker_recv"},
            {"parent", "parked in ", "park_marker_join"},
            {"child", "parked in Event::wait", "park_marker_event"},
        };
        for (const Want& w : wants) {
            const std::string blk = block_of(info, w.name);
            INFO(w.name);
            CHECK_MESSAGE(!blk.empty(), "no line for the greenlet");
            CHECK(blk.find(w.wait) != std::string::npos);
            CHECK(blk.find(w.marker) != std::string::npos);
            CHECK(blk.find(" for ") != std::string::npos);  // how long
            CHECK(blk.find("KiB touched") != std::string::npos);
        }
        CHECK(block_of(info, "on-recv").find("unix socket") != std::string::npos);
        // The child is printed under its parent, indented deeper.
        const std::size_t p = info.find(" parent: "), c = info.find(" child: ");
        REQUIRE(p != std::string::npos);
        REQUIRE(c != std::string::npos);
        CHECK(c > p);
        const auto indent_at = [&](std::size_t pos) {
            const std::size_t ls = info.rfind('\n', pos) + 1;
            return info.find_first_not_of(' ', ls) - ls;
        };
        CHECK(indent_at(c) > indent_at(p));
        // The caller itself (main here) is running; the one not started yet is listed.
        CHECK(info.find("running (this call)") != std::string::npos);
        CHECK(block_of(info, "not-yet").find("not started") != std::string::npos);
        // Nothing was resumed: all still wait.
        for (auto& g : gs) CHECK_FALSE(g.dead());

        // Without stacks: the same lines, no frames.
        const std::string bare = cogent::format_run_info({.stacks = false});
        CHECK(bare.find("park_marker_") == std::string::npos);
        CHECK(block_of(bare, "on-event").find("parked in Event::wait") != std::string::npos);

        ev.set();
        q.put(1);
        lock.release();
        result.set(7);
        a.sendall("x", 1);
        sleeper.kill();
        cogent::joinall(gs);
        not_started.join();
    }

    TEST_CASE("another thread's hub answers for itself; a busy one is sampled") {
        std::atomic<int> stage{0};
        std::atomic<bool> stop{false};
        std::thread t([&] {
            cogent::Event ev;
            auto g = cogent::spawn({.name = "remote-waiter"}, [&] { park_marker_event(ev); });
            cogent::sleep(0);
            stage = 1;
            while (stage.load() < 2) cogent::sleep(1ms);
            // Now hold the hub: compute without yielding.
            stage = 3;
            auto until = std::chrono::steady_clock::now() + 20s;
            while (!stop && std::chrono::steady_clock::now() < until) {
            }
            ev.set();
            g.join();
        });
        while (stage.load() < 1) std::this_thread::sleep_for(1ms);
        const std::string info = cogent::format_run_info();
        INFO(info);
        CHECK(block_of(info, "remote-waiter").find("park_marker_event") != std::string::npos);
        CHECK(info.find("busy") == std::string::npos);
        stage = 2;
        while (stage.load() < 3) std::this_thread::sleep_for(1ms);
        const std::string busy = cogent::format_run_info();
        stop = true;
        t.join();
        INFO(busy);
        CHECK(busy.find(": busy: ran no callback for") != std::string::npos);
        // Its live backtrace shows the test's thread function, computing.
        CHECK(busy.find("test_util.cpp") != std::string::npos);
    }
}

TEST_SUITE("run_info") {
    TEST_CASE("COGENT_RUN_INFO_SIGNAL prints run info on the signal, a busy hub included") {
        const char* child = std::getenv("COGENT_CHILD_RUN_INFO");
        REQUIRE(child != nullptr);
        auto r = run_child(std::string("env COGENT_RUN_INFO_SIGNAL=SIGQUIT ") + child);
        INFO(r.output);
        CHECK(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(r.output.find("done\n") != std::string::npos);
        const std::size_t p1 = r.output.find("phase 1"), p2 = r.output.find("phase 2");
        REQUIRE(p1 != std::string::npos);
        REQUIRE(p2 != std::string::npos);
        // Phase 1: the hub answered; both greenlets with their waits and the waiter's frame.
        const std::string idle = r.output.substr(p1, p2 - p1);
        CHECK(idle.find("=== cogent run info") != std::string::npos);
        CHECK(block_of(idle, "signal-waiter").find("parked in Event::wait") != std::string::npos);
        CHECK(block_of(idle, "signal-waiter").find("signal_marker_wait") != std::string::npos);
        CHECK(block_of(idle, "signal-sleeper").find("parked in sleep()") != std::string::npos);
        // Phase 2: the hub is held by the spinner: sampled, the spinning function in its trace.
        const std::string busy = r.output.substr(p2);
        CHECK(busy.find(": busy: ran no callback for") != std::string::npos);
        CHECK(busy.find("; running spinner; ") != std::string::npos);
        CHECK(busy.find("signal_marker_spin") != std::string::npos);
    }

    TEST_CASE("a malformed COGENT_RUN_INFO_SIGNAL is named") {
        const char* child = std::getenv("COGENT_CHILD_RUN_INFO");
        REQUIRE(child != nullptr);
        for (const char* bad : {"SIGNOPE", "SIGKILL", "0", "99", "RTMIN+99", "SIGSEGV"}) {
            auto r = run_child(std::string("env COGENT_RUN_INFO_SIGNAL=") + bad + " " + child);
            INFO(bad, r.output);
            CHECK(r.output.find(std::string("COGENT_RUN_INFO_SIGNAL='") + bad +
                                "' is not a signal that can be caught") != std::string::npos);
        }
    }
}

TEST_SUITE("settrace") {
    TEST_CASE_FIXTURE(LeakCheck, "every switch is traced with its origin and target") {
        struct Ev {
            std::string event, from, to;
        };
        std::vector<Ev> evs;
        auto prev = cogent::settrace(
            [&](std::string_view e, const cogent::GreenletInfo& o, const cogent::GreenletInfo& t) {
                // The hub and main by role, the others by name.
                auto who = [](const cogent::GreenletInfo& g) {
                    return g.is_hub()    ? std::string("hub")
                           : g.is_main() ? std::string("main")
                                         : g.name();
                };
                evs.push_back({std::string(e), who(o), who(t)});
            });
        CHECK_FALSE(prev);
        CHECK(cogent::gettrace());
        auto g = cogent::spawn({.name = "traced"}, [] { cogent::sleep(0); });
        g.join();
        auto k = cogent::spawn({.name = "killed"}, [] { cogent::sleep(10s); });
        cogent::sleep(0);
        k.kill();
        // A raw switch made inline in this file is traced too.
        cogent::RawGreenlet raw([](std::any v) { return v; });
        raw.switch_to(1);
        auto old = cogent::settrace({});
        CHECK(old);
        CHECK_FALSE(cogent::gettrace());
        const std::size_t n = evs.size();
        cogent::spawn([] {}).join();
        CHECK(evs.size() == n);  // off again
        auto has = [&](const char* e, const char* from, const char* to) {
            for (const Ev& v : evs)
                if (v.event == e && v.from == from && v.to == to) return true;
            return false;
        };
        CHECK(has("switch", "main", "hub"));
        CHECK(has("switch", "hub", "traced"));
        CHECK(has("switch", "traced", "hub"));
        CHECK(has("throw", "hub", "killed"));  // the kill throws into it, from the hub
        CHECK_FALSE(has("throw", "hub", "traced"));
        bool raw_seen = false;
        for (const Ev& v : evs)
            if (v.from == "main" && v.to.rfind("<greenlet 0x", 0) == 0) raw_seen = true;
        CHECK_MESSAGE(raw_seen, "the inline raw switch was not traced");
    }

    TEST_CASE_FIXTURE(LeakCheck, "a trace function that throws is reported, the switch goes on") {
        Recorder rec;
        cogent::settrace([](std::string_view, const cogent::GreenletInfo&,
                            const cogent::GreenletInfo&) { throw std::runtime_error("tracer"); });
        auto g = cogent::spawn([] { return 5; });
        CHECK(g.get() == 5);
        cogent::settrace({});
        auto seen = rec.take();
        REQUIRE_FALSE(seen.empty());
        CHECK(seen[0].what == "tracer");
        CHECK(seen[0].where == "the trace function (settrace)");
    }
}

namespace {
[[gnu::noinline]] void monitor_marker_busy(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) asm volatile("");
}
}  // namespace

TEST_SUITE("monitor") {
    TEST_CASE_FIXTURE(LeakCheck,
                      "a greenlet holding the hub is reported once, named, with its frame") {
        std::mutex mu;
        std::vector<cogent::monitor::BlockedReport> reports;
        auto prev = cogent::monitor::on_blocked([&](const cogent::monitor::BlockedReport& r) {
            std::lock_guard<std::mutex> lk(mu);
            reports.push_back(r);
        });
        cogent::monitor::start(0.1);
        CHECK(cogent::monitor::running());
        cogent::sleep(50ms);  // the hub now watches its polls
        // Idle (asleep in poll) and busy-but-yielding are not blocked.
        cogent::sleep(400ms);
        const auto t0 = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - t0 < 400ms) cogent::sleep(0);
        {
            std::lock_guard<std::mutex> lk(mu);
            CHECK(reports.empty());
        }
        cogent::spawn({.name = "spinner"}, [] { monitor_marker_busy(500ms); }).join();
        cogent::sleep(300ms);
        cogent::monitor::on_blocked(std::move(prev));
        std::lock_guard<std::mutex> lk(mu);
        REQUIRE(reports.size() == 1);
        const auto& r = reports[0];
        INFO(r.message);
        CHECK(r.greenlet == "spinner");
        CHECK(r.seconds > 0.1);
        CHECK(r.seconds <= 0.2);  // within 2x the limit
        CHECK(r.limit == doctest::Approx(0.1));
        CHECK(r.hub == cogent::get_hub().index());
        CHECK(r.backtrace.find("monitor_marker_busy") != std::string::npos);
        CHECK(r.message.find("cogent: monitor: hub ") == 0);
        CHECK_THROWS_AS(cogent::monitor::start(-1), std::invalid_argument);
        CHECK_THROWS_AS(cogent::monitor::start(1e9), std::invalid_argument);
    }

    TEST_CASE("COGENT_MONITOR=1 reports on stderr; a malformed value is named") {
        const char* child = std::getenv("COGENT_CHILD_RUN_INFO");
        REQUIRE(child != nullptr);
        auto r = run_child(std::string("env COGENT_MONITOR=1 COGENT_MAX_BLOCKING_TIME=0.1 ") +
                           child + " spin");
        INFO(r.output);
        CHECK(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(r.output.find("done\n") != std::string::npos);
        std::size_t n = 0;
        for (std::size_t at = 0; (at = r.output.find("cogent: monitor:", at)) != std::string::npos;
             ++at)
            ++n;
        CHECK(n == 1);
        CHECK(r.output.find("by greenlet 'spinner'") != std::string::npos);
        CHECK(r.output.find("monitor_marker_spin") != std::string::npos);
        CHECK(r.output.find("COGENT_MAX_BLOCKING_TIME=0.1)") != std::string::npos);
        // Off: nothing.
        auto off = run_child(std::string(child) + " spin");
        CHECK(off.output.find("cogent: monitor:") == std::string::npos);
        auto bad = run_child(std::string("env COGENT_MONITOR=maybe ") + child + " spin");
        CHECK(bad.output.find("COGENT_MONITOR='maybe' is neither 1") != std::string::npos);
    }
}
