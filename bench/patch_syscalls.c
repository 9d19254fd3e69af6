/* patch_syscalls: the syscall-heavy program of the patch_passthrough_ratio figure (see
 * bench/patch_bench.cpp), which runs it with and without libcogent_patch.so preloaded. It knows
 * nothing of cogent: under the shim every call takes the pass-through path (no hub on this
 * thread), which is what the figure prices.
 *
 *   patch_syscalls ITERATIONS BATCHES
 *
 * Each iteration writes one byte into a pipe and reads it back (two system calls through the
 * shim's write and read hooks). After one untimed batch, BATCHES batches of ITERATIONS are timed;
 * prints the best (smallest) nanoseconds per iteration, as "%.2f\n". Exit 1 on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: patch_syscalls ITERATIONS BATCHES\n");
        return 2;
    }
    long iters = atol(argv[1]), batches = atol(argv[2]);
    if (iters <= 0 || batches <= 0) {
        fprintf(stderr, "patch_syscalls: ITERATIONS and BATCHES must be positive\n");
        return 2;
    }
    int p[2];
    if (pipe(p) != 0) {
        perror("patch_syscalls: pipe");
        return 1;
    }
    double best = 1e300;
    for (long b = 0; b <= batches; ++b) {
        double t0 = now_ns();
        for (long i = 0; i < iters; ++i) {
            char c = (char)i;
            if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1 || c != (char)i) {
                perror("patch_syscalls: write/read");
                return 1;
            }
        }
        double per = (now_ns() - t0) / (double)iters;
        if (b > 0 && per < best) best = per; /* batch 0 is the warm-up */
    }
    printf("%.2f\n", best);
    return 0;
}
