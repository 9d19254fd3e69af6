/* A C11 <threads.h> conformance program, plain C and built without cogent (-pthread only): run
 * with real threads and under `cogent-run --threads`, every line it prints but the last must be
 * the same. Those lines are deterministic (results, return codes, counts; never timing or ids).
 * The last line, "os_threads ...", is the one that may differ: the most OS threads the process
 * had while five C11 threads were alive, and how many of those threads ran on main's OS thread.
 *
 * Covered: thrd_create/thrd_join with a result, thrd_exit from depth, thrd_current/thrd_equal,
 * thrd_detach, thrd_sleep, thrd_yield (a two-thread turn-taking that only progresses if
 * yielding lets the other run), mtx_t (plain, timed: mtx_timedlock timing out and then
 * succeeding; recursive; trylock busy), cnd_t (cnd_timedwait timing out, cnd_signal,
 * cnd_broadcast), tss_create with a destructor (run per thread that set a value, not for main),
 * call_once. alarm(20) bounds a hang. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "child_tasks.h"

static int g_failures;
static void expect(int ok, const char* what) {
    if (ok) return;
    printf("FAILED: %s\n", what);
    ++g_failures;
}

static const char* rc(int r) {
    switch (r) {
        case thrd_success:
            return "success";
        case thrd_busy:
            return "busy";
        case thrd_timedout:
            return "timedout";
        case thrd_nomem:
            return "nomem";
        case thrd_error:
            return "error";
        default:
            return "other";
    }
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* A TIME_UTC deadline `ms` from now, as mtx_timedlock and cnd_timedwait take. */
static struct timespec utc_in_ms(long ms) {
    struct timespec t;
    timespec_get(&t, TIME_UTC);
    t.tv_nsec += (ms % 1000) * 1000000L;
    t.tv_sec += ms / 1000 + t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

static long gettid_(void) { return (long)syscall(SYS_gettid); }

/* ---- create, join with a result, exit from depth, current/equal ---- */
static thrd_t g_seen_self[4];
static int times_ten_plus(void* p) {
    int i = (int)(intptr_t)p;
    g_seen_self[i] = thrd_current();
    return i * 10 + 1;
}
/* Through a pointer: GCC's -Winfinite-recursion counts a noreturn base case as no way out. */
static void (*volatile g_thrd_exit)(int) = thrd_exit;
static void exit_deep(int depth) {
    if (depth == 0)
        g_thrd_exit(42);
    else
        exit_deep(depth - 1);
}
static int exits_from_depth(void* p) {
    (void)p;
    exit_deep(5);
    return -1; /* not reached */
}
static int self_equals_self(void* p) {
    thrd_t* main_id = p;
    return (thrd_equal(thrd_current(), thrd_current()) ? 1 : 0) +
           (thrd_equal(thrd_current(), *main_id) ? 10 : 0);
}

static void test_create_join(void) {
    thrd_t t[4];
    for (int i = 0; i < 4; ++i)
        expect(thrd_create(&t[i], times_ten_plus, (void*)(intptr_t)i) == thrd_success, "create");
    for (int i = 0; i < 4; ++i) {
        int res = -1;
        int r = thrd_join(t[i], &res);
        printf("join %d: %s -> %d\n", i, rc(r), res);
        printf("thread %d: thrd_current equals its thrd_t: %d\n", i,
               thrd_equal(g_seen_self[i], t[i]) != 0);
    }
    printf("distinct ids: %d\n", !thrd_equal(g_seen_self[0], g_seen_self[1]) &&
                                     !thrd_equal(g_seen_self[1], g_seen_self[2]) &&
                                     !thrd_equal(g_seen_self[2], g_seen_self[3]));
    thrd_t e;
    int res = -1;
    thrd_create(&e, exits_from_depth, NULL);
    int r = thrd_join(e, &res);
    printf("thrd_exit from depth: %s -> %d\n", rc(r), res);
    thrd_t me = thrd_current(), s;
    thrd_create(&s, self_equals_self, &me);
    thrd_join(s, &res);
    printf("in a thread: equal(current, current) %d, equal(current, main) %d\n", res % 10,
           res / 10);
    printf("main: equal(current, current) %d\n", thrd_equal(thrd_current(), thrd_current()) != 0);
    /* A NULL result pointer is allowed. */
    thrd_create(&s, times_ten_plus, (void*)(intptr_t)0);
    printf("join without a result: %s\n", rc(thrd_join(s, NULL)));
}

/* ---- detach ---- */
static atomic_int g_detached_ran;
static int detached_body(void* p) {
    (void)p;
    atomic_store(&g_detached_ran, 1);
    return 0;
}
static void test_detach(void) {
    thrd_t t;
    thrd_create(&t, detached_body, NULL);
    printf("detach: %s\n", rc(thrd_detach(t)));
    for (int i = 0; i < 2000 && !atomic_load(&g_detached_ran); ++i)
        thrd_sleep(&(struct timespec){0, 1000000}, NULL);
    printf("detached thread ran: %d\n", atomic_load(&g_detached_ran));
}

/* ---- mtx_t ---- */
static mtx_t g_plain;
static long g_counter;
static int incrementer(void* p) {
    (void)p;
    for (int i = 0; i < 2000; ++i) {
        mtx_lock(&g_plain);
        long v = g_counter;
        if (i % 100 == 0) thrd_yield(); /* inside the lock: others must wait, not race */
        g_counter = v + 1;
        mtx_unlock(&g_plain);
    }
    return 0;
}

static mtx_t g_timed;
static int timedlock_times_out(void* p) {
    (void)p;
    long t0 = now_ms();
    struct timespec dl = utc_in_ms(100);
    int r = mtx_timedlock(&g_timed, &dl);
    long waited = now_ms() - t0;
    if (r == thrd_success) mtx_unlock(&g_timed);
    return r == thrd_timedout && waited >= 90 ? 1 : r == thrd_timedout ? 2 : 3 + r;
}
static int timedlock_gets_it(void* p) {
    (void)p;
    struct timespec dl = utc_in_ms(10000);
    int r = mtx_timedlock(&g_timed, &dl);
    if (r == thrd_success) mtx_unlock(&g_timed);
    return r;
}
static int trylock_other(void* p) { /* trylock from another thread than the holder */
    int r = mtx_trylock(p);
    if (r == thrd_success) mtx_unlock(p);
    return r;
}

static void test_mutexes(void) {
    mtx_init(&g_plain, mtx_plain);
    thrd_t t[4];
    for (int i = 0; i < 4; ++i) thrd_create(&t[i], incrementer, NULL);
    for (int i = 0; i < 4; ++i) thrd_join(t[i], NULL);
    printf("mtx_plain counter: %ld\n", g_counter);
    mtx_destroy(&g_plain);

    printf("mtx_init timed: %s\n", rc(mtx_init(&g_timed, mtx_timed)));
    mtx_lock(&g_timed);
    int res = -1;
    thrd_t a;
    thrd_create(&a, timedlock_times_out, NULL);
    thrd_join(a, &res);
    printf("mtx_timedlock while held: timed out after >= 90 ms: %d\n", res == 1);
    thrd_create(&a, trylock_other, &g_timed);
    thrd_join(a, &res);
    printf("mtx_trylock while held: %s\n", rc(res));
    thrd_create(&a, timedlock_gets_it, NULL);
    thrd_sleep(&(struct timespec){0, 50000000}, NULL); /* it waits, then gets it */
    mtx_unlock(&g_timed);
    thrd_join(a, &res);
    printf("mtx_timedlock released meanwhile: %s\n", rc(res));
    mtx_destroy(&g_timed);

    mtx_t rec;
    printf("mtx_init recursive: %s\n", rc(mtx_init(&rec, mtx_plain | mtx_recursive)));
    int r1 = mtx_lock(&rec), r2 = mtx_lock(&rec), r3 = mtx_trylock(&rec);
    printf("recursive: lock %s, again %s, trylock %s\n", rc(r1), rc(r2), rc(r3));
    thrd_create(&a, trylock_other, &rec);
    thrd_join(a, &res);
    printf("recursive held by main, trylock from a thread: %s\n", rc(res));
    mtx_unlock(&rec);
    mtx_unlock(&rec);
    mtx_unlock(&rec);
    thrd_create(&a, trylock_other, &rec);
    thrd_join(a, &res);
    printf("recursive released, trylock from a thread: %s\n", rc(res));
    mtx_destroy(&rec);
}

/* ---- cnd_t ---- */
static mtx_t g_m;
static cnd_t g_c;
static int g_ready, g_woken;
static int cond_waiter(void* p) {
    (void)p;
    mtx_lock(&g_m);
    struct timespec dl = utc_in_ms(10000);
    int r = thrd_success;
    while (!g_ready && r == thrd_success) r = cnd_timedwait(&g_c, &g_m, &dl);
    if (r == thrd_success) ++g_woken;
    mtx_unlock(&g_m);
    return r;
}
static void test_conditions(void) {
    mtx_init(&g_m, mtx_plain);
    cnd_init(&g_c);
    /* A timed wait nobody signals. */
    mtx_lock(&g_m);
    long t0 = now_ms();
    struct timespec dl = utc_in_ms(100);
    int r = cnd_timedwait(&g_c, &g_m, &dl);
    long waited = now_ms() - t0;
    mtx_unlock(&g_m);
    printf("cnd_timedwait unsignalled: %s, after >= 90 ms: %d\n", rc(r), waited >= 90);
    /* cnd_signal: one waiter. */
    thrd_t t[3];
    thrd_create(&t[0], cond_waiter, NULL);
    thrd_sleep(&(struct timespec){0, 30000000}, NULL);
    mtx_lock(&g_m);
    g_ready = 1;
    cnd_signal(&g_c);
    mtx_unlock(&g_m);
    int res = -1;
    thrd_join(t[0], &res);
    printf("cnd_signal: waiter %s, woken %d\n", rc(res), g_woken);
    /* cnd_broadcast: three. */
    g_ready = 0;
    g_woken = 0;
    for (int i = 0; i < 3; ++i) thrd_create(&t[i], cond_waiter, NULL);
    thrd_sleep(&(struct timespec){0, 30000000}, NULL);
    mtx_lock(&g_m);
    g_ready = 1;
    cnd_broadcast(&g_c);
    mtx_unlock(&g_m);
    int ok = 0;
    for (int i = 0; i < 3; ++i) {
        thrd_join(t[i], &res);
        ok += res == thrd_success;
    }
    printf("cnd_broadcast: %d of 3 returned success, woken %d\n", ok, g_woken);
    cnd_destroy(&g_c);
    mtx_destroy(&g_m);
}

/* ---- tss ---- */
static tss_t g_key;
static atomic_int g_dtor_calls, g_dtor_sum;
static void tss_dtor(void* v) {
    atomic_fetch_add(&g_dtor_calls, 1);
    atomic_fetch_add(&g_dtor_sum, *(int*)v);
    free(v);
}
static int tss_user(void* p) {
    int i = (int)(intptr_t)p;
    int before = tss_get(g_key) == NULL;
    int* v = malloc(sizeof *v);
    *v = i;
    tss_set(g_key, v);
    thrd_yield(); /* the others set theirs meanwhile */
    thrd_sleep(&(struct timespec){0, 5000000}, NULL);
    int* back = tss_get(g_key);
    return before && back == v && *back == i;
}
static void test_tss(void) {
    printf("tss_create: %s\n", rc(tss_create(&g_key, tss_dtor)));
    static int main_value = 1000;
    tss_set(g_key, &main_value);
    thrd_t t[4];
    for (int i = 0; i < 4; ++i) thrd_create(&t[i], tss_user, (void*)(intptr_t)(i + 1));
    int ok = 0, res = 0;
    for (int i = 0; i < 4; ++i) {
        thrd_join(t[i], &res);
        ok += res;
    }
    printf("tss: %d of 4 threads saw their own value\n", ok);
    printf("tss destructors: %d calls, sum %d\n", atomic_load(&g_dtor_calls),
           atomic_load(&g_dtor_sum));
    printf("tss main's value kept: %d\n", tss_get(g_key) == &main_value);
    tss_set(g_key, NULL);
    tss_delete(g_key);
}

/* ---- call_once ---- */
static once_flag g_once = ONCE_FLAG_INIT;
static atomic_int g_once_calls;
static void once_init(void) {
    thrd_sleep(&(struct timespec){0, 20000000}, NULL); /* the others arrive meanwhile */
    atomic_fetch_add(&g_once_calls, 1);
}
static int once_user(void* p) {
    (void)p;
    call_once(&g_once, once_init);
    return atomic_load(&g_once_calls); /* done for everyone once call_once returns */
}
static void test_call_once(void) {
    thrd_t t[4];
    for (int i = 0; i < 4; ++i) thrd_create(&t[i], once_user, NULL);
    int all_saw_one = 1, res = 0;
    for (int i = 0; i < 4; ++i) {
        thrd_join(t[i], &res);
        all_saw_one &= res == 1;
    }
    call_once(&g_once, once_init);
    printf("call_once: init ran %d time(s), every caller saw it done: %d\n",
           atomic_load(&g_once_calls), all_saw_one);
}

/* ---- sleep, yield ---- */
static atomic_int g_turn;
static int turn_taker(void* p) {
    int me = (int)(intptr_t)p;
    for (int round = 0; round < 200; ++round) {
        while (atomic_load(&g_turn) % 2 != me) thrd_yield();
        atomic_fetch_add(&g_turn, 1);
    }
    return 0;
}
static void test_sleep_yield(void) {
    long t0 = now_ms();
    struct timespec rem = {0, 0};
    int r = thrd_sleep(&(struct timespec){0, 50000000}, &rem);
    printf("thrd_sleep 50 ms: %d, slept >= 45 ms: %d\n", r, now_ms() - t0 >= 45);
    thrd_t a, b;
    thrd_create(&a, turn_taker, (void*)(intptr_t)0);
    thrd_create(&b, turn_taker, (void*)(intptr_t)1);
    thrd_join(a, NULL);
    thrd_join(b, NULL);
    printf("thrd_yield turn-taking: %d turns\n", atomic_load(&g_turn));
}

/* ---- OS threads while five C11 threads are alive ---- */
static mtx_t g_pm;
static cnd_t g_pc;
static int g_arrived, g_release;
static long g_main_tid;
static int parked(void* p) {
    (void)p;
    int on_main = gettid_() == g_main_tid;
    mtx_lock(&g_pm);
    ++g_arrived;
    cnd_broadcast(&g_pc);
    while (!g_release) cnd_wait(&g_pc, &g_pm);
    mtx_unlock(&g_pm);
    return on_main;
}
static void report_os_threads(void) {
    enum { N = 5 };
    g_main_tid = gettid_();
    mtx_init(&g_pm, mtx_plain);
    cnd_init(&g_pc);
    thrd_t t[N];
    for (int i = 0; i < N; ++i) thrd_create(&t[i], parked, NULL);
    mtx_lock(&g_pm);
    while (g_arrived < N) cnd_wait(&g_pc, &g_pm);
    int peak = count_tasks(); /* all five alive, none can end before the release */
    g_release = 1;
    cnd_broadcast(&g_pc);
    mtx_unlock(&g_pm);
    int on_main = 0, res = 0;
    for (int i = 0; i < N; ++i) {
        thrd_join(t[i], &res);
        on_main += res;
    }
    cnd_destroy(&g_pc);
    mtx_destroy(&g_pm);
    printf("os_threads peak %d, threads on main's OS thread %d of %d\n", peak, on_main, N);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(20); /* a hang is a failure, not a stuck test */
    test_create_join();
    test_detach();
    test_mutexes();
    test_conditions();
    test_tss();
    test_call_once();
    test_sleep_yield();
    printf("done, %d failure(s)\n", g_failures);
    report_os_threads();
    return g_failures ? 1 : 0;
}
