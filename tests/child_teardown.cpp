// Not a test file: a helper process. Its exit status and output are CHECKed by tests/test_exit.cpp.
// Child program for test_exit: a program whose greenlets are still busy when it ends must exit.
//   periodic MS        main spawns `for (;;) sleep(MS)`, joins another greenlet, and returns
//   thread MS          the same on a std::thread with its own hub; main joins the thread
//   stubborn           a greenlet catches GreenletExit and keeps sleeping: reported and leaked
//   blocking-cleanup   an unwound greenlet's destructor sleeps: the hub runs it to its end
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {
void say(const char* text) {
    std::puts(text);
    std::fflush(stdout);
}

struct Announce {
    const char* text;
    ~Announce() { say(text); }
};

// The program shape of issue 12: a ticker, some other work joined, then the end of main.
void periodic_program(std::chrono::milliseconds period) {
    auto ticker = cogent::spawn([period] {
        Announce a{"ticker unwound"};
        for (;;) cogent::sleep(period);
    });
    auto work = cogent::spawn([] { cogent::sleep(20ms); });
    work.join();
    say("main returning");
}
}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    const std::chrono::milliseconds period(argc > 2 ? std::atoi(argv[2]) : 100);
    if (mode == "periodic") {
        periodic_program(period);
        return 0;
    }
    if (mode == "thread") {
        std::thread t([period] { periodic_program(period); });
        t.join();
        say("thread joined");
        return 0;
    }
    if (mode == "stubborn") {
        auto g = cogent::spawn([] {
            for (;;) {
                try {
                    cogent::sleep(50ms);
                } catch (const cogent::GreenletExit&) {
                    say("stubborn greenlet caught GreenletExit");
                }
            }
        });
        g.set_name("stubborn");
        auto ticker = cogent::spawn([] {
            Announce a{"ticker unwound"};
            for (;;) cogent::sleep(100ms);
        });
        cogent::sleep(20ms);
        say("main returning");
        return 0;
    }
    if (mode == "blocking-cleanup") {
        struct SlowCleanup {
            ~SlowCleanup() {
                cogent::sleep(50ms);  // blocks while being unwound: the hub must run it
                say("blocking cleanup finished");
            }
        };
        auto g = cogent::spawn([] {
            SlowCleanup c;
            for (;;) cogent::sleep(100ms);
        });
        cogent::sleep(20ms);
        say("main returning");
        return 0;
    }
    std::fprintf(stderr, "usage: child_teardown periodic|thread MS, stubborn, blocking-cleanup\n");
    return 2;
}
