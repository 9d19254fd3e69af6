/* Real and green threads in one program, plain C and built without cogent (-pthread, linked with
 * tests/libspawner.c): the program starts threads itself ("direct") and through libspawner
 * ("library"). Under `cogent-run --threads` the direct ones are green (main's OS thread); with
 * COGENT_REAL_THREADS naming libspawner the library's stay real, so a real and a green thread
 * then share one pthread mutex and condition.
 *
 * Lines starting with "os:" say which threads ran on their own OS thread (syscall(SYS_gettid)
 * against main's): they depend on the mode and the test checks them per mode. Every other line
 * is deterministic and the same in every mode: condition handoffs in both directions (the
 * waiter is inside pthread_cond_wait when the other signals), a ping-pong of turns and a
 * contended mutex, each between a direct and a library thread.
 *
 * Joins: main joins the direct thread of each pair first. A real thread's join is libc's and
 * holds main's OS thread, with every green thread on it, until that thread ends; by then the
 * direct (green) partner it may need has ended. alarm(20) bounds a hang. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libspawner.h"

static long g_main_tid;
static long tid(void) { return (long)syscall(SYS_gettid); }
static int own_os_thread(void) { return tid() != g_main_tid; }
static const char* yes_no(int v) { return v < 0 ? "unknown" : v ? "yes" : "no"; }

static pthread_mutex_t g_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_c = PTHREAD_COND_INITIALIZER;

/* What each pair's threads record: whether they ran on their own OS thread. */
struct pair_own {
    int direct, library;
};

/* Starts `direct_fn` (this program's pthread_create) and `library_fn` (libspawner's), joins the
 * direct one first, records each's own_os_thread() (their return values). 0 if both started. */
static int run_pair(void* (*direct_fn)(void*), void* (*library_fn)(void*), struct pair_own* own) {
    pthread_t d, l;
    own->direct = own->library = -1;
    if (pthread_create(&d, NULL, direct_fn, NULL) != 0) return -1;
    if (spawner_create(&l, library_fn, NULL) != 0) {
        pthread_join(d, NULL);
        return -1;
    }
    void* rd = NULL;
    void* rl = NULL;
    pthread_join(d, &rd);
    pthread_join(l, &rl);
    own->direct = rd != NULL;
    own->library = rl != NULL;
    return 0;
}

static void* report_own(void* p) {
    (void)p;
    return own_os_thread() ? (void*)1 : NULL;
}

/* ---- handoff: the waiter is in pthread_cond_wait when the signaller sets the flag ---- */
static int g_waiting, g_flag, g_handoffs;
static void* handoff_waiter(void* p) {
    (void)p;
    pthread_mutex_lock(&g_m);
    g_waiting = 1;
    pthread_cond_broadcast(&g_c);
    while (!g_flag) pthread_cond_wait(&g_c, &g_m);
    ++g_handoffs;
    pthread_mutex_unlock(&g_m);
    return own_os_thread() ? (void*)1 : NULL;
}
static void* handoff_signaller(void* p) {
    (void)p;
    pthread_mutex_lock(&g_m);
    /* Seeing g_waiting means the waiter released the mutex inside pthread_cond_wait. */
    while (!g_waiting) pthread_cond_wait(&g_c, &g_m);
    usleep(20000); /* holding the mutex: the waiter stays parked in the wait */
    g_flag = 1;
    pthread_cond_signal(&g_c);
    pthread_mutex_unlock(&g_m);
    return own_os_thread() ? (void*)1 : NULL;
}
static void reset_handoff(void) { g_waiting = g_flag = 0; }

/* ---- ping-pong: turns alternate between the two threads ---- */
enum { kRounds = 200 };
static int g_turn;
static void* take_turns(int me) {
    pthread_mutex_lock(&g_m);
    for (int i = 0; i < kRounds; ++i) {
        while (g_turn % 2 != me) pthread_cond_wait(&g_c, &g_m);
        ++g_turn;
        pthread_cond_broadcast(&g_c);
    }
    pthread_mutex_unlock(&g_m);
    return own_os_thread() ? (void*)1 : NULL;
}
static void* turns_even(void* p) {
    (void)p;
    return take_turns(0);
}
static void* turns_odd(void* p) {
    (void)p;
    return take_turns(1);
}

/* ---- a contended mutex ---- */
enum { kIncrements = 20000 };
static pthread_mutex_t g_counter_m = PTHREAD_MUTEX_INITIALIZER;
static long g_counter;
static void* increment(void* p) {
    (void)p;
    for (int i = 0; i < kIncrements; ++i) {
        pthread_mutex_lock(&g_counter_m);
        long v = g_counter;
        if (i % 1000 == 0) usleep(100); /* hold it a while now and then: the other waits */
        g_counter = v + 1;
        pthread_mutex_unlock(&g_counter_m);
    }
    return own_os_thread() ? (void*)1 : NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(20);
    g_main_tid = tid();
    int failures = 0;
    struct pair_own own;

    failures += run_pair(report_own, report_own, &own) != 0;
    printf("os: direct thread on its own OS thread: %s\n", yes_no(own.direct));
    printf("os: library thread on its own OS thread: %s\n", yes_no(own.library));

    /* The library's thread signals, the direct one waits. */
    reset_handoff();
    failures += run_pair(handoff_waiter, handoff_signaller, &own) != 0;
    printf("handoff library -> direct: %d\n", g_handoffs);
    printf("os: handoff threads own OS thread: direct %s, library %s\n", yes_no(own.direct),
           yes_no(own.library));
    /* The direct thread signals, the library's waits. */
    reset_handoff();
    failures += run_pair(handoff_signaller, handoff_waiter, &own) != 0;
    printf("handoff direct -> library: %d\n", g_handoffs);

    failures += run_pair(turns_even, turns_odd, &own) != 0;
    printf("ping-pong: %d turns\n", g_turn);

    failures += run_pair(increment, increment, &own) != 0;
    printf("contended mutex: counter %ld\n", g_counter);

    printf("library threads started: %d\n", spawner_created());
    printf("done, %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
