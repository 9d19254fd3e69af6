// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_stacks.cpp. Child program for test_stacks: run with COGENT_STACK_SIZE set. Prints the
// default stack size and what spawning a greenlet does (twice: a malformed setting must fail every
// time). With the argument "thread", spawns from a new std::thread three times instead and prints
// how many file descriptors the failed attempts left open.
#include <dirent.h>

#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace {
int open_fds() {
    int n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

void attempt() {
    try {
        auto g = cogent::spawn([] { return 7; });
        int v = g.get();
        std::printf("spawn ok %d default=%zu\n", v, cogent::debug::default_stack_size());
    } catch (const std::invalid_argument& e) {
        std::printf("invalid_argument: %s\n", e.what());
    } catch (const std::exception& e) {
        std::printf("other exception: %s\n", e.what());
    }
    std::fflush(stdout);  // a sanitizer's leak report at exit would end the process unflushed
}
}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "thread") == 0) {
        const int before = open_fds();
        std::thread t([] {
            for (int i = 0; i < 3; ++i) attempt();
        });
        t.join();
        std::printf("fds leaked: %d\n", open_fds() - before);
    } else {
        for (int i = 0; i < 2; ++i) attempt();
    }
    std::fflush(stdout);
    return 0;
}
