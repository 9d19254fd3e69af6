// libspawner (see libspawner.h). The shim tells who calls pthread_create by its return address,
// so the call must not be a tail call (which would return straight to this library's caller):
// the count after it keeps it a real call at any optimisation level.
#include "libspawner.h"

static int g_created;

int spawner_create(pthread_t* thread, void* (*start)(void*), void* arg) {
    const int e = pthread_create(thread, NULL, start, arg);
    if (e == 0) __atomic_add_fetch(&g_created, 1, __ATOMIC_RELAXED);
    return e;
}

int spawner_created(void) { return __atomic_load_n(&g_created, __ATOMIC_RELAXED); }
