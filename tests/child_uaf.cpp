// Not a test file: a helper process. Its exit status and output are CHECKed by
// tests/test_stacks.cpp. Child program for test_stacks (ASan build only): a heap-use-after-free
// inside a greenlet must be reported by AddressSanitizer, proving it is active on greenlet stacks.
#include <cogent/cogent.hpp>
#include <cstdio>

namespace {
int* volatile g_ptr = nullptr;  // volatile: the compiler cannot see the use after free
}

int main() {
    auto g = cogent::spawn([] {
        cogent::sleep(0);  // run after a switch, on the greenlet's own stack
        g_ptr = new int[4]{1, 2, 3, 4};
        delete[] g_ptr;
        return g_ptr[2];
    });
    std::printf("uaf read returned %d\n", g.get());
    return 0;
}
