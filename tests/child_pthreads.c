/* A pthread conformance program, plain C and built without cogent (-pthread only): run with real
 * threads and under `cogent-run --threads` (every thread a greenlet of one hub), its output must
 * be the same, line for line. Every line is deterministic: results, error codes, counts; never
 * timing or ids. `tasks` prints the number of OS threads while 8 threads are alive (the only
 * line that differs, and the test checks it apart). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "child_tasks.h"

/* A result that is wrong whatever the threads are: reported, and the exit status says so. */
static int g_failures;
static void expect(int ok, const char* what) {
    if (ok) return;
    printf("FAILED: %s\n", what);
    ++g_failures;
}

static const char* err(int e) {
    switch (e) {
        case 0:
            return "0";
        case EDEADLK:
            return "EDEADLK";
        case EPERM:
            return "EPERM";
        case EBUSY:
            return "EBUSY";
        case EINVAL:
            return "EINVAL";
        case ETIMEDOUT:
            return "ETIMEDOUT";
        case ESRCH:
            return "ESRCH";
        case EAGAIN:
            return "EAGAIN";
        case ERANGE:
            return "ERANGE";
        default:
            return "other";
    }
}

static struct timespec in_ms(clockid_t c, long ms) {
    struct timespec t;
    clock_gettime(c, &t);
    t.tv_nsec += (ms % 1000) * 1000000L;
    t.tv_sec += ms / 1000 + t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

/* ---- create, join values, exit from depth, self ---- */
static void* add_one(void* p) { return (void*)((intptr_t)p + 1); }
/* GCC takes pthread_exit's noreturn for a recursion without end. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static void deep_exit(int depth, intptr_t v) {
    if (depth == 0) pthread_exit((void*)v);
    deep_exit(depth - 1, v);
    printf("not reached\n");
}
static void* exits_deep(void* p) {
    deep_exit(5, (intptr_t)p);
    return NULL;
}
static pthread_t seen_self[4];
static void* record_self(void* p) {
    seen_self[(intptr_t)p] = pthread_self();
    return NULL;
}

/* ---- mutexes, conditions ---- */
static pthread_mutex_t counter_mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void* count_up(void* p) {
    for (int i = 0; i < 1000; ++i) {
        pthread_mutex_lock(&counter_mu);
        long v = counter;
        if (i % 100 == 0) sched_yield();
        counter = v + 1;
        pthread_mutex_unlock(&counter_mu);
    }
    return p;
}

static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc_cv = PTHREAD_COND_INITIALIZER;
static int queue[64], qhead, qtail, qdone;
static void* producer(void* p) {
    for (int i = 0; i < 200; ++i) {
        pthread_mutex_lock(&pc_mu);
        while (qtail - qhead == 64) pthread_cond_wait(&pc_cv, &pc_mu);
        queue[qtail++ % 64] = i;
        pthread_cond_broadcast(&pc_cv);
        pthread_mutex_unlock(&pc_mu);
    }
    pthread_mutex_lock(&pc_mu);
    qdone = 1;
    pthread_cond_broadcast(&pc_cv);
    pthread_mutex_unlock(&pc_mu);
    return p;
}
static void* consumer(void* p) {
    (void)p;
    long sum = 0;
    for (;;) {
        pthread_mutex_lock(&pc_mu);
        while (qtail == qhead && !qdone) pthread_cond_wait(&pc_cv, &pc_mu);
        if (qtail == qhead && qdone) {
            pthread_mutex_unlock(&pc_mu);
            break;
        }
        sum += queue[qhead++ % 64];
        pthread_cond_broadcast(&pc_cv);
        pthread_mutex_unlock(&pc_mu);
    }
    return (void*)sum;
}

/* ---- barrier, once ---- */
static pthread_barrier_t bar;
static int serials;
static pthread_mutex_t serial_mu = PTHREAD_MUTEX_INITIALIZER;
static void* at_barrier(void* p) {
    for (int r = 0; r < 3; ++r)
        if (pthread_barrier_wait(&bar) == PTHREAD_BARRIER_SERIAL_THREAD) {
            pthread_mutex_lock(&serial_mu);
            ++serials;
            pthread_mutex_unlock(&serial_mu);
        }
    return p;
}
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs;
static void once_init(void) {
    ++once_runs;
    usleep(10000);
}
static void* call_once(void* p) {
    pthread_once(&once, once_init);
    return p;
}

/* ---- keys ---- */
static pthread_key_t key;
static int dtor_calls;
static pthread_mutex_t dtor_mu = PTHREAD_MUTEX_INITIALIZER;
static void key_dtor(void* v) {
    pthread_mutex_lock(&dtor_mu);
    dtor_calls += (int)(intptr_t)v;
    pthread_mutex_unlock(&dtor_mu);
}
static void* use_key(void* p) {
    if (pthread_getspecific(key) != NULL) return (void*)-1;
    pthread_setspecific(key, p);
    usleep(1000);
    return pthread_getspecific(key);
}

/* ---- semaphores, detach ---- */
static sem_t sem;
static void* post_later(void* p) {
    usleep(5000);
    sem_post(&sem);
    return p;
}

/* ---- self-join, cancel ---- */
static void* join_self(void* p) {
    (void)p;
    return (void*)(intptr_t)pthread_join(pthread_self(), NULL);
}
static void* wait_for_cancel(void* p) {
    (void)p;
    for (;;) {
        pthread_testcancel();
        usleep(1000);
    }
    return NULL;
}

static pthread_barrier_t hold;
static void* hold_on(void* p) {
    pthread_barrier_wait(&hold);
    pthread_barrier_wait(&hold);
    return p;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "tasks") == 0) {
        pthread_t t[8];
        pthread_barrier_init(&hold, NULL, 9);
        for (int i = 0; i < 8; ++i) pthread_create(&t[i], NULL, hold_on, NULL);
        pthread_barrier_wait(&hold);
        printf("tasks %d\n", count_tasks());
        pthread_barrier_wait(&hold);
        for (int i = 0; i < 8; ++i) pthread_join(t[i], NULL);
        return 0;
    }

    pthread_t t[8];
    void* r;
    /* create and join: values */
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, add_one, (void*)(intptr_t)(i * 10));
    for (int i = 0; i < 4; ++i) {
        pthread_join(t[i], &r);
        printf("join %d -> %ld\n", i, (long)(intptr_t)r);
    }
    pthread_create(&t[0], NULL, exits_deep, (void*)(intptr_t)42);
    pthread_join(t[0], &r);
    printf("pthread_exit from depth 5 -> %ld\n", (long)(intptr_t)r);

    /* self: distinct and stable, equal to what create gave */
    pthread_t created[4];
    for (int i = 0; i < 4; ++i) pthread_create(&created[i], NULL, record_self, (void*)(intptr_t)i);
    for (int i = 0; i < 4; ++i) pthread_join(created[i], NULL);
    int same = 1, distinct = 1;
    for (int i = 0; i < 4; ++i) {
        same &= pthread_equal(created[i], seen_self[i]) != 0;
        for (int j = 0; j < i; ++j) distinct &= !pthread_equal(seen_self[i], seen_self[j]);
        distinct &= !pthread_equal(seen_self[i], pthread_self());
    }
    printf("self: equal to create's %d, distinct %d\n", same, distinct);

    /* mutex contention */
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, count_up, NULL);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    printf("counter %ld\n", counter);
    expect(counter == 4000, "4 threads x 1000 increments under a mutex");

    /* producer / consumers on a condition */
    pthread_create(&t[0], NULL, producer, NULL);
    pthread_create(&t[1], NULL, consumer, NULL);
    pthread_create(&t[2], NULL, consumer, NULL);
    long total = 0;
    pthread_join(t[0], NULL);
    pthread_join(t[1], &r);
    total += (long)(intptr_t)r;
    pthread_join(t[2], &r);
    total += (long)(intptr_t)r;
    printf("consumed sum %ld\n", total);
    expect(total == 199 * 200 / 2, "every produced item consumed once");

    /* mutex types and their errors */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t em;
    pthread_mutex_init(&em, &ma);
    printf("errorcheck: unlock unlocked %s", err(pthread_mutex_unlock(&em)));
    pthread_mutex_lock(&em);
    printf(", relock %s, trylock %s, destroy locked %s", err(pthread_mutex_lock(&em)),
           err(pthread_mutex_trylock(&em)), err(pthread_mutex_destroy(&em)));
    pthread_mutex_unlock(&em);
    printf(", destroy %s\n", err(pthread_mutex_destroy(&em)));
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_t rm;
    pthread_mutex_init(&rm, &ma);
    int a1 = pthread_mutex_lock(&rm), a2 = pthread_mutex_lock(&rm), a3 = pthread_mutex_unlock(&rm),
        a4 = pthread_mutex_unlock(&rm), a5 = pthread_mutex_unlock(&rm);
    printf("recursive: %s %s %s %s, extra unlock %s\n", err(a1), err(a2), err(a3), err(a4),
           err(a5));
    pthread_mutex_destroy(&rm);
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_t nm = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&nm);
    struct timespec at = in_ms(CLOCK_REALTIME, 20);
    printf("timedlock held %s", err(pthread_mutex_timedlock(&nm, &at)));
    at = in_ms(CLOCK_MONOTONIC, 20);
    printf(", clocklock monotonic %s\n", err(pthread_mutex_clocklock(&nm, CLOCK_MONOTONIC, &at)));
    pthread_mutex_unlock(&nm);

    /* condition timeouts on both clocks */
    pthread_cond_t c_rt = PTHREAD_COND_INITIALIZER, c_mono;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c_mono, &ca);
    pthread_mutex_lock(&nm);
    at = in_ms(CLOCK_REALTIME, 20);
    printf("cond timedwait realtime %s", err(pthread_cond_timedwait(&c_rt, &nm, &at)));
    at = in_ms(CLOCK_MONOTONIC, 20);
    printf(", monotonic %s", err(pthread_cond_timedwait(&c_mono, &nm, &at)));
    printf(", mutex held after %s\n", err(pthread_mutex_trylock(&nm)));
    pthread_mutex_unlock(&nm);

    /* barrier: one serial thread per round */
    pthread_barrier_init(&bar, NULL, 4);
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, at_barrier, NULL);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    printf("barrier: %d serial in 3 rounds\n", serials);
    expect(serials == 3, "one serial thread per round");
    pthread_barrier_destroy(&bar);

    /* once */
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, call_once, NULL);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    printf("once ran %d time(s)\n", once_runs);
    expect(once_runs == 1, "pthread_once ran its routine once");

    /* keys: per thread values, destructors at thread end */
    pthread_key_create(&key, key_dtor);
    for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, use_key, (void*)(intptr_t)(i + 1));
    long keysum = 0;
    for (int i = 0; i < 4; ++i) {
        pthread_join(t[i], &r);
        keysum += (long)(intptr_t)r;
    }
    printf("keys: values %ld, destructor sum %d, main's value %p\n", keysum, dtor_calls,
           pthread_getspecific(key));
    expect(keysum == 10 && dtor_calls == 10, "per-thread key values and their destructors");
    pthread_key_delete(key);

    /* semaphore posted by a detached thread */
    sem_init(&sem, 0, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t[0], &attr, post_later, NULL);
    pthread_attr_destroy(&attr);
    printf("sem_wait %d", sem_wait(&sem));
    at = in_ms(CLOCK_REALTIME, 10);
    int tw = sem_timedwait(&sem, &at);
    printf(", timedwait %d %s\n", tw, err(tw ? errno : 0));

    /* join misuse: self-join, detached, joined twice, tryjoin of a running thread */
    pthread_create(&t[0], NULL, join_self, NULL);
    pthread_join(t[0], &r);
    printf("self-join %s\n", err((int)(intptr_t)r));
    pthread_create(&t[1], NULL, add_one, NULL);
    int d1 = pthread_detach(t[1]);
    printf("detach %s\n", err(d1));
    pthread_create(&t[2], NULL, wait_for_cancel, NULL);
    printf("tryjoin running %s\n", err(pthread_tryjoin_np(t[2], NULL)));
    printf("cancel %s", err(pthread_cancel(t[2])));
    pthread_join(t[2], &r);
    printf(", joined: canceled %d\n", r == PTHREAD_CANCELED);
    expect(r == PTHREAD_CANCELED, "a cancelled thread's join value");

    /* names */
    pthread_create(&t[3], NULL, wait_for_cancel, NULL);
    char name[32] = "";
    printf("setname %s, long name %s", err(pthread_setname_np(t[3], "worker-3")),
           err(pthread_setname_np(t[3], "a-name-longer-than-15")));
    int gn = pthread_getname_np(t[3], name, sizeof name);
    printf(", getname %s '%s', small buffer %s\n", err(gn), name,
           err(pthread_getname_np(t[3], name, 8)));
    pthread_cancel(t[3]);
    pthread_join(t[3], NULL);
    printf("done\n");
    return g_failures == 0 ? 0 : 1;
}
