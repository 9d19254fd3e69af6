/* The OS threads (tasks) of the calling process, counted in /proc/self/task: how the C test
 * children show whether their threads are real ones or greenlets of one OS thread. -1 if the
 * directory cannot be read. Header-only, for the plain C children. */
#ifndef COGENT_TESTS_CHILD_TASKS_H
#define COGENT_TESTS_CHILD_TASKS_H

#include <dirent.h>

static inline int count_tasks(void) {
    int n = 0;
    DIR* d = opendir("/proc/self/task");
    if (!d) return -1;
    for (struct dirent* e; (e = readdir(d));)
        if (e->d_name[0] != '.') ++n;
    closedir(d);
    return n;
}

#endif
