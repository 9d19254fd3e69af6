// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_stacks.cpp. Child program for test_stacks: unbounded recursion in a greenlet with a
// small stack. The runtime must report "stack overflow in greenlet NAME (stack size N bytes ...)"
// and the process must die by SIGSEGV.
#include <cogent/cogent.hpp>
#include <cstdio>

namespace {
volatile unsigned long g_limit =
    ~0ul;  // never reached: keeps the compiler from proving recursion infinite

unsigned long deep(unsigned long depth) {
    volatile char frame[512];
    frame[0] = char(depth);
    frame[sizeof frame - 1] = char(depth);
    if (depth >= g_limit) return frame[0];
    return deep(depth + 1) + frame[sizeof frame - 1];  // not a tail call
}
}  // namespace

int main() {
    auto g = cogent::spawn(cogent::SpawnOptions{.name = "deep-recursion", .stack_size = 64 * 1024},
                           [] { return deep(0); });
    g.join();
    std::puts("recursion returned");  // not reached
    return 0;
}
