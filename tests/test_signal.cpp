// signal_handler: handlers run in greenlets on the main hub; cancel restores the previous
// disposition. Only SIGUSR1/SIGUSR2 are used: their default action kills the process, so each
// test that could leave one at SIG_DFL installs a plain fallback handler first.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::LeakCheck;

namespace {

// The bound on a wait that another greenlet, thread or process ends: long, because a loaded
// machine can stall a test for seconds, and only a broken wait ever reaches it.
constexpr auto kLong = std::chrono::seconds(30);

std::atomic<int> g_plain_hits{0};
void plain_handler(int) { g_plain_hits.fetch_add(1); }

// Installs a plain sigaction handler for `sig` for the scope, then puts back what was there.
struct PlainHandler {
    int sig;
    struct sigaction old {};
    explicit PlainHandler(int s) : sig(s) {
        struct sigaction sa {};
        sa.sa_handler = plain_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, &old);
        g_plain_hits = 0;
    }
    ~PlainHandler() { sigaction(sig, &old, nullptr); }
};

// True when the plain fallback (not libev's handler) is installed for sig.
bool plain_installed(int sig) {
    struct sigaction sa {};
    sigaction(sig, nullptr, &sa);
    return sa.sa_handler == plain_handler;
}

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: runs in a greenlet that may block; cancel stops it") {
    PlainHandler fallback(SIGUSR1);
    cogent::Event ran;
    int calls = 0;
    auto h = cogent::signal_handler(SIGUSR1, [&] {
        cogent::sleep(2ms);  // a handler may block: it is not on the hub (that would throw)
        ++calls;
        ran.set();
    });
    CHECK(h.active());
    CHECK(h.signum() == SIGUSR1);
    CHECK_FALSE(plain_installed(SIGUSR1));  // libev's handler is in place
    ::kill(::getpid(), SIGUSR1);
    CHECK(ran.wait(kLong));
    CHECK(calls == 1);
    CHECK(g_plain_hits == 0);

    ran.clear();
    ::kill(::getpid(), SIGUSR1);
    CHECK(ran.wait(kLong));
    CHECK(calls == 2);

    h.cancel();
    CHECK_FALSE(h.active());
    CHECK(plain_installed(SIGUSR1));  // the previous disposition is back
    ::kill(::getpid(), SIGUSR1);
    cogent::sleep(20ms);
    CHECK(calls == 2);
    CHECK(g_plain_hits == 1);
    h.cancel();  // idempotent
}

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: several handlers all run, in installation order") {
    PlainHandler fallback(SIGUSR2);
    std::vector<int> order;
    cogent::Event done;
    auto h1 = cogent::signal_handler(SIGUSR2, [&] { order.push_back(1); });
    auto h2 = cogent::signal_handler(
        SIGUSR2, [&](int tag) { order.push_back(tag); }, 2);
    auto h3 = cogent::signal_handler(SIGUSR2, [&] {
        order.push_back(3);
        done.set();
    });
    ::kill(::getpid(), SIGUSR2);
    CHECK(done.wait(kLong));
    cogent::sleep(0);
    CHECK(order == std::vector<int>{1, 2, 3});

    // Cancelling one leaves the others; the disposition comes back only after the last.
    h2.cancel();
    order.clear();
    done.clear();
    ::kill(::getpid(), SIGUSR2);
    CHECK(done.wait(kLong));
    cogent::sleep(0);
    CHECK(order == std::vector<int>{1, 3});
    {
        // Destroying the handle cancels the handler.
        cogent::SignalHandler moved = std::move(h1);
        CHECK_FALSE(h1.active());
        CHECK(moved.active());
    }
    h3 = cogent::SignalHandler();  // assigning cancels what it held
    CHECK(plain_installed(SIGUSR2));
    ::kill(::getpid(), SIGUSR2);
    CHECK(g_plain_hits == 1);
}

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: a handler's exception is reported, not fatal") {
    PlainHandler fallback(SIGUSR1);
    cogent::Event ran;
    cogent_test::StderrCapture cap;
    auto h = cogent::signal_handler(SIGUSR1, [&] {
        ran.set();
        throw std::runtime_error("boom in a signal handler");
    });
    ::kill(::getpid(), SIGUSR1);
    CHECK(ran.wait(kLong));
    cogent::sleep(5ms);
    std::string text = cap.text();
    CHECK(text.find("boom in a signal handler") != std::string::npos);
    CHECK(text.find("signal_handler(" + std::to_string(SIGUSR1) + ")") != std::string::npos);
}

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: bad signal numbers and callables are rejected") {
    auto noop = [] {};
    for (int sig : {0, -1, NSIG, 1000, int(SIGKILL), int(SIGSTOP), int(SIGSEGV), int(SIGBUS),
                    int(SIGFPE), int(SIGILL), int(SIGCHLD), 32, 33})
        CHECK_THROWS_AS((void)cogent::signal_handler(sig, noop), std::invalid_argument);
    CHECK_THROWS_AS((void)cogent::signal_handler(SIGUSR1, std::function<void()>()),
                    std::invalid_argument);
    try {
        (void)cogent::signal_handler(SIGKILL, noop);
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("cannot be caught") != std::string::npos);
    }
}

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: an installed handler keeps the main hub alive") {
    PlainHandler fallback(SIGUSR1);
    cogent::Event got;
    auto h = cogent::signal_handler(SIGUSR1, [&] { got.set(); });
    std::thread sender([] {
        std::this_thread::sleep_for(30ms);
        ::kill(::getpid(), SIGUSR1);
    });
    CHECK(got.wait());  // no timeout: only the signal watcher can wake us, and no LoopExit
    sender.join();
}

TEST_CASE_FIXTURE(LeakCheck, "signal_handler: install and cancel from another thread") {
    PlainHandler fallback(SIGUSR2);
    const auto main_id = std::this_thread::get_id();
    std::atomic<bool> ran_on_main{false};
    std::atomic<int> calls{0};
    auto thread_done = std::make_shared<cogent::AsyncResult<int>>();
    std::thread t([&, thread_done] {
        int result = 0;
        try {
            auto handled = std::make_shared<cogent::AsyncResult<void>>();
            auto h = cogent::signal_handler(SIGUSR2, [&, handled] {
                ran_on_main = std::this_thread::get_id() == main_id;
                cogent::sleep(1ms);
                ++calls;
                handled->set();
            });
            ::kill(::getpid(), SIGUSR2);
            handled->get(kLong);  // cooperative on this thread's hub
            h.cancel();
            result = 1;
        } catch (const std::exception& e) {
            fprintf(stderr, "thread: %s\n", e.what());
        } catch (const cogent::Timeout&) {
            fprintf(stderr, "thread: timed out\n");
        }
        thread_done->set(result);
    });
    int result = thread_done->get(2 * kLong);  // the main hub runs meanwhile
    t.join();
    CHECK(result == 1);
    CHECK(ran_on_main);
    CHECK(calls == 1);
    // The cancel was handed to this (main) hub; let it run, then the old handler is back.
    for (auto t0 = std::chrono::steady_clock::now();
         !plain_installed(SIGUSR2) && cogent_test::ms_since(t0) < 30000;)
        cogent::sleep(1ms);
    CHECK(plain_installed(SIGUSR2));
    ::kill(::getpid(), SIGUSR2);
    CHECK(g_plain_hits == 1);
    CHECK(calls == 1);
}
