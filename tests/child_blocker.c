// A plain C program (no cogent) for test_patch_threads: under cogent-run --threads, a green
// thread named "blocker" sits 1.5 s in sigtimedwait, a system call the shim leaves to the
// kernel, while another thread ("ticker") wants to run every 20 ms. The watchdog should name
// the blocker and the call once. Prints how many ticks ran during the block (with real threads
// about 75; under --threads none, as the hub is held), and how many OS threads there are.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "child_tasks.h"

static atomic_int ticks;
static atomic_int stop;

static void* ticker(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "ticker");
    while (!atomic_load(&stop)) {
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static void* blocker(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "blocker");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    struct timespec t = {1, 500 * 1000 * 1000};
    const int before = atomic_load(&ticks);
    int r = sigtimedwait(&set, NULL, &t);  // times out: nobody sends SIGUSR1
    printf("sigtimedwait: %d, ticks during it: %d\n", r, atomic_load(&ticks) - before);
    return NULL;
}

int main(void) {
    alarm(20);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t a, b;
    pthread_create(&a, NULL, ticker, NULL);
    struct timespec d = {0, 100 * 1000 * 1000};
    nanosleep(&d, NULL);  // the ticker runs
    pthread_create(&b, NULL, blocker, NULL);
    printf("os_threads %d\n", count_tasks());
    pthread_join(b, NULL);
    atomic_store(&stop, 1);
    pthread_join(a, NULL);
    printf("done\n");
    return 0;
}
