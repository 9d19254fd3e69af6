/* thread_max: how many threads one process can have alive at once (bench/threaded_http.py).
 * Plain C, no cogent (-pthread only): run as it is (OS threads), and under
 * `cogent-run --threads` (green threads).
 *
 *   thread_max [--max N]     (default 100000)
 *
 * Creates threads with default attributes, each of which waits on a condition variable until
 * all are released, until N are alive or pthread_create fails; then releases and joins them.
 * Prints one line:
 *   thread_max alive=A stopped_by=WHY create_s=T rss_kib=R os_threads=O
 * (WHY: "target" or the error, e.g. "Resource temporarily unavailable"; R: the process's RSS
 * with all of them alive; O: its OS threads then, from /proc/self/status). Exit status 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released;
static long started;

static void* waiter(void* arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    ++started;
    while (!released) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static long status_field(const char* name) {
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    long max = 100000;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--max N]\n", argv[0]);
            return 2;
        }
    }
    if (max < 1) {
        fprintf(stderr, "thread_max: --max must be at least 1\n");
        return 2;
    }
    pthread_t* ids = malloc(sizeof(pthread_t) * (size_t)max);
    if (!ids) return 1;
    long alive = 0;
    const char* why = "target";
    const double t0 = now_s();
    while (alive < max) {
        int e = pthread_create(&ids[alive], NULL, waiter, NULL);
        if (e) {
            why = strerror(e);
            break;
        }
        ++alive;
    }
    /* Every thread waiting (a green one runs once main waits). */
    for (;;) {
        pthread_mutex_lock(&mu);
        long s = started;
        pthread_mutex_unlock(&mu);
        if (s == alive) break;
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    const double create_s = now_s() - t0;
    const long rss = status_field("VmRSS"), os = status_field("Threads");
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (long i = 0; i < alive; ++i) pthread_join(ids[i], NULL);
    printf("thread_max alive=%ld stopped_by=%s create_s=%.2f rss_kib=%ld os_threads=%ld\n", alive,
           why, create_s, rss, os);
    free(ids);
    return 0;
}
