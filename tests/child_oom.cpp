// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_stack_guard.cpp.
// Under an address-space limit (RLIMIT_AS, as `ulimit -v` sets), spawn more greenlets with 1 MiB
// stacks than the limit leaves room for, all waiting on one Event. The hub starts them; those
// that get no stack must end with std::bad_alloc ("could not start (no stack)"), seen by get(),
// while the hub and every greenlet that did start keep working. Then a raw greenlet switched to
// without a stack: the switcher gets std::bad_alloc. Prints "oom ok started=N failed=M" and exits
// 0; anything else is a failure.
#include <sys/resource.h>

#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <vector>

namespace {
constexpr std::size_t kStack = 1024 * 1024;
constexpr int kSpawn = 600;  // about 600 MiB of stacks: well past the limit

int fail(const std::string& why) {
    std::printf("oom child: %s\n", why.c_str());
    std::fflush(stdout);
    return 1;
}
}  // namespace

int main() {
    cogent::sleep(0);  // the hub and its stack exist before the limit
    std::vector<cogent::Greenlet<int>> gs;
    gs.reserve(kSpawn + 10);
    cogent::Event go;
    int woken = 0;

    std::size_t pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    rlimit rl{};
    rl.rlim_cur = rl.rlim_max = pages * 4096 + (256u << 20);  // 256 MiB more than now
    if (pages == 0 || setrlimit(RLIMIT_AS, &rl) != 0) return fail("setrlimit failed");

    for (int i = 0; i < kSpawn; ++i)
        gs.push_back(cogent::spawn(cogent::SpawnOptions{.stack_size = kStack}, [&go, &woken, i] {
            go.wait();
            ++woken;
            return i;
        }));
    cogent::sleep(0);     // the hub starts them all: those it cannot give a stack fail
    cogent::sleep(0.01);  // the hub still runs timers

    int started = 0, failed = 0;
    std::string message;
    for (auto& g : gs) {
        if (!g.ready()) {
            ++started;
            continue;
        }
        try {
            (void)g.get();
            return fail("a greenlet that got no stack returned a value");
        } catch (const std::bad_alloc& e) {
            ++failed;
            message = e.what();
        }
    }
    std::printf("started=%d failed=%d message=%s\n", started, failed, message.c_str());
    if (failed == 0) return fail("the limit was never reached");
    if (started == 0) return fail("no greenlet started");
    if (message.find("cogent: Greenlet-") != 0 ||
        message.find("could not start (no stack)") == std::string::npos)
        return fail("unexpected message: " + message);

    // The spawner's side: a raw greenlet switched to without a stack to give it.
    cogent::RawGreenlet raw([](std::any v) { return v; }, {}, 64u << 20);
    try {
        raw.switch_to();
        return fail("a raw greenlet started beyond the limit");
    } catch (const std::bad_alloc&) {
    }
    if (raw.dead() || raw.started()) return fail("the raw greenlet changed state");

    go.set();
    for (auto& g : gs)
        if (!g.ready()) g.join();
    if (woken != started) return fail("woken " + std::to_string(woken));
    // Their stacks are back in the pool: new greenlets start again.
    auto again = cogent::spawn(cogent::SpawnOptions{.stack_size = kStack}, [] { return 7; });
    if (again.get() != 7) return fail("a later spawn failed");
    std::printf("oom ok started=%d failed=%d\n", started, failed);
    std::fflush(stdout);
    return 0;
}
