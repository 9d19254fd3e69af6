// For test_util: run info on a signal (COGENT_RUN_INFO_SIGNAL). Greenlets park in two waits;
// the program signals itself while its hub is idle, then again while a greenlet computes
// without yielding (the hub busy), and prints "done" when all ended: the signal must not
// disturb it. Run info goes to stderr.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "cogent/cogent.hpp"

using namespace std::chrono_literals;

[[gnu::noinline]] void signal_marker_wait(cogent::Event& ev) {
    ev.wait();
    asm volatile("");
}

[[gnu::noinline]] void signal_marker_spin(std::chrono::steady_clock::time_point until) {
    bool raised = false;
    while (std::chrono::steady_clock::now() < until) {
        if (!raised) {
            raised = true;
            raise(SIGQUIT);  // from inside the busy hub
        }
        asm volatile("");
    }
}

[[gnu::noinline]] void monitor_marker_spin(std::chrono::steady_clock::time_point until) {
    while (std::chrono::steady_clock::now() < until) asm volatile("");
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "spin") {
        // For the monitor (COGENT_MONITOR=1): one greenlet holds the hub for 0.5 s.
        auto spinner = cogent::spawn({.name = "spinner"}, [] {
            monitor_marker_spin(std::chrono::steady_clock::now() + 500ms);
        });
        const auto t0 = std::chrono::steady_clock::now();
        spinner.join();
        cogent::sleep(300ms);  // idle: nothing more to report
        // The monitor's sampling signal must not have cut the spin short or failed it.
        if (!spinner.successful() || std::chrono::steady_clock::now() - t0 < 700ms) {
            std::printf("the spinner was disturbed\n");
            return 1;
        }
        std::printf("done\n");
        return 0;
    }
    cogent::Event ev;
    auto waiter = cogent::spawn({.name = "signal-waiter"}, [&] { signal_marker_wait(ev); });
    auto sleeper = cogent::spawn({.name = "signal-sleeper"}, [] { cogent::sleep(10s); });
    cogent::sleep(0);
    std::fprintf(stderr, "phase 1: idle hub\n");
    raise(SIGQUIT);
    cogent::sleep(1s);  // the report is printed from another thread meanwhile
    std::fprintf(stderr, "phase 2: busy hub\n");
    auto spinner = cogent::spawn({.name = "spinner"},
                                 [] { signal_marker_spin(std::chrono::steady_clock::now() + 2s); });
    spinner.join();
    cogent::sleep(200ms);
    // The signals and the sampling left every greenlet as it was: the waiter still waits and
    // ends by the event, the sleeper still sleeps until killed, the spinner ran to its end.
    if (waiter.dead() || sleeper.dead() || !spinner.successful()) {
        std::printf("a greenlet was disturbed by run info\n");
        return 1;
    }
    ev.set();
    sleeper.kill();
    waiter.join();
    if (!waiter.successful() || !sleeper.dead() || sleeper.exception()) {
        std::printf("wrong outcome: waiter %d, sleeper %d\n", int(waiter.successful()),
                    int(sleeper.successful()));
        return 1;
    }
    std::printf("done\n");
    return 0;
}
