// A system call without libc: no errno, no interposition. For code that must not call into
// libc (a vforked child) or must not reach the monkey patch's own hooks (the parking lot's
// futexes: the shim interposes syscall()). Header-only. Internal.
#pragma once

#include <unistd.h>

#include <cerrno>

// No sanitizer instrumentation (a vforked child runs on a stack ASan does not know), inlined.
#define COGENT_RAW_SYSCALL_INLINE \
    __attribute__((no_sanitize("address", "undefined"), always_inline)) inline

namespace cogent::detail {

// The result, or -errno.
COGENT_RAW_SYSCALL_INLINE long raw_syscall(long n, long a = 0, long b = 0, long c = 0, long d = 0,
                                           long e = 0, long f = 0) {
#if defined(__x86_64__)
    long ret;
    register long r10 asm("r10") = d;
    register long r8 asm("r8") = e;
    register long r9 asm("r9") = f;
    asm volatile("syscall"
                 : "=a"(ret)
                 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                 : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 asm("x8") = n;
    register long x0 asm("x0") = a;
    register long x1 asm("x1") = b;
    register long x2 asm("x2") = c;
    register long x3 asm("x3") = d;
    register long x4 asm("x4") = e;
    register long x5 asm("x5") = f;
    asm volatile("svc 0"
                 : "+r"(x0)
                 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                 : "memory");
    return x0;
#else
    // Elsewhere libc's syscall(): errno is set (and the shim's hook may see the call).
    long r = ::syscall(n, a, b, c, d, e, f);
    return r < 0 ? -long(errno) : r;
#endif
}

}  // namespace cogent::detail
