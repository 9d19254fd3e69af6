// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_threads.cpp. Child program for test_threads: leaves greenlets suspended and ends the
// process, either by returning from main ("return") or by calling std::exit(3) ("exit"). Their
// destructors must run. "exit-in-greenlet": std::exit(4) from inside a greenlet; the process must
// still end cleanly.
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
struct Announce {
    const char* text;
    ~Announce() {
        std::puts(text);
        std::fflush(stdout);
    }
};
}  // namespace

int main(int argc, char** argv) {
    const bool use_exit = argc > 1 && std::strcmp(argv[1], "exit") == 0;
    if (argc > 1 && std::strcmp(argv[1], "exit-in-greenlet") == 0) {
        auto hang = cogent::spawn([] {
            cogent::Event never;
            never.wait();
        });
        auto g = cogent::spawn([] {
            cogent::sleep(0);
            std::puts("exiting from a greenlet");
            std::fflush(stdout);
            std::exit(4);
        });
        g.join();
        std::puts("not reached");
        return 1;
    }
    auto hang = cogent::spawn([] {
        Announce a{"spawned greenlet unwound at exit"};
        cogent::Event never;
        never.wait();
    });
    cogent::RawGreenlet main = cogent::getcurrent();
    cogent::RawGreenlet raw([main](std::any) mutable -> std::any {
        Announce a{"raw greenlet unwound at exit"};
        main.switch_to();
        return {};
    });
    raw.switch_to();
    cogent::sleep(0);
    if (!hang.active()) {
        std::puts("greenlet did not start");
        return 1;
    }
    std::puts("main returning");
    std::fflush(stdout);
    if (use_exit) std::exit(3);
    return 0;
}
