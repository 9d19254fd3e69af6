// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_stack_guard.cpp. Built twice: child_stack_guard with the project's flags
// (-fstack-clash-protection) and child_stack_guard_noprobe with -fno-stack-clash-protection
// and COGENT_NOPROBE.
//
// Two greenlets with 128 KiB stacks, side by side in one slab: "neighbour" (lower in memory)
// fills 64 KiB of its stack with a pattern and sleeps; "big-frame" (just above it) uses its
// stack up to 8 KiB from the end, then calls a function with a 64 KiB local array. That frame
// reaches 40 KiB past the 16 KiB guard, into the neighbour's pattern.
// - With probes, the function's prologue touches each page on the way down and faults in the
//   guard: the runtime names big-frame, the handler below finds the neighbour intact
//   ("neighbour intact"), the process dies with SIGSEGV. Without probes, its writes at the low
//   end of the array land in the neighbour's stack: the neighbour wakes, finds its pattern
//   broken and says "neighbour corrupted" (exit 1).
// - COGENT_NOPROBE writes the array from its top down: the writes reach the guard and fault
//   there, with the stack pointer already 56 KiB below the stack. The runtime names big-frame and
//   says the frame jumped the guard.
#include <signal.h>
#include <unistd.h>

#include <cogent/cogent.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {
constexpr std::size_t kStack = 128 * 1024;
constexpr std::size_t kPattern = 64 * 1024;
constexpr unsigned char kByte = 0x5a;
constexpr std::size_t kBig = 64 * 1024;

volatile unsigned char* g_pattern = nullptr;  // the neighbour's buffer
std::uintptr_t g_top = 0;                     // an address near the top of big-frame's stack
struct sigaction g_cogent_segv;

bool pattern_intact() {
    for (std::size_t i = 0; i < kPattern; ++i)
        if (g_pattern[i] != kByte) return false;
    return true;
}

void say(const char* s) {
    ssize_t r = write(2, s, std::strlen(s));
    (void)r;
}

// Runs after the runtime's own report: is the neighbour's stack as it was?
void check_neighbour(int sig, siginfo_t* info, void* uctx) {
    g_cogent_segv.sa_sigaction(sig, info, uctx);
    say(pattern_intact() ? "neighbour intact\n" : "neighbour corrupted\n");
    // Returning re-faults; the runtime has restored SIGSEGV's default action.
}

[[gnu::noinline]] unsigned big_frame() {
    volatile unsigned char arr[kBig];
#ifdef COGENT_NOPROBE
    for (std::size_t i = kBig; i-- > 0;) arr[i] = 1;  // top down: reaches the guard first
#else
    for (std::size_t i = 0; i < 4096; ++i) arr[i] = 1;  // the low end: the neighbour's stack
#endif
    return arr[0] + arr[kBig - 1];
}

// Recurse in 1 KiB frames until the stack pointer is within about 8 KiB of the stack's end.
[[gnu::noinline]] unsigned descend(unsigned depth) {
    volatile unsigned char frame[1024];
    frame[0] = static_cast<unsigned char>(depth);
    const auto here = reinterpret_cast<std::uintptr_t>(&frame[0]);
    if (g_top - here >= kStack - 8 * 1024 - 1024) return big_frame() + frame[0];
    return descend(depth + 1) + frame[0];  // not a tail call
}
}  // namespace

int main() {
    auto neighbour =
        cogent::spawn(cogent::SpawnOptions{.name = "neighbour", .stack_size = kStack}, [] {
            volatile unsigned char buf[kPattern];
            for (std::size_t i = 0; i < kPattern; ++i) buf[i] = kByte;
            g_pattern = buf;
            cogent::sleep(0.5);
            if (!pattern_intact()) {
                say("neighbour corrupted\n");
                _exit(1);
            }
            say("neighbour intact\n");
        });
    cogent::sleep(0);  // the neighbour takes its stack first, and fills its pattern
    struct sigaction sa {};
    sa.sa_sigaction = check_neighbour;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_cogent_segv);  // the runtime's handler is installed by now

    auto big = cogent::spawn(cogent::SpawnOptions{.name = "big-frame", .stack_size = kStack}, [] {
        volatile int top = 0;
        g_top = reinterpret_cast<std::uintptr_t>(&top);
        const auto mine = g_top, theirs = reinterpret_cast<std::uintptr_t>(g_pattern);
        // The neighbour's stack must lie just below ours (one stack and a guard down).
        if (theirs > mine || mine - theirs > 2 * kStack + 64 * 1024) {
            std::printf("stacks not adjacent: %#zx and %#zx\n", std::size_t(mine),
                        std::size_t(theirs));
            std::fflush(stdout);
            _exit(3);
        }
        return descend(0);
    });
    big.join();
    neighbour.join();
    std::puts("big frame returned");
    return 0;
}
