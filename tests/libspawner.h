// libspawner: a tiny shared library whose only job is to start a pthread, for the test of
// COGENT_REAL_THREADS (tests/test_patch_threads.cpp, tests/child_realthreads.c): under
// `cogent-run --threads` its pthread_create call comes from this library, so naming the library
// in COGENT_REAL_THREADS keeps its threads real while the program's own become green.
#pragma once

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

// pthread_create(thread, NULL, start, arg), called from this library: pthread_create's result.
int spawner_create(pthread_t* thread, void* (*start)(void*), void* arg);
// How many threads spawner_create has started.
int spawner_created(void);

#ifdef __cplusplus
}
#endif
