// libblocking (see libblocking.h): plain blocking libc calls, linked against libc as any
// library is (its references carry glibc's symbol versions, as libzmq's do).
#include "libblocking.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int blocking_pair(int sv[2], int timeout_ms) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    for (int i = 0; i < 2; ++i) {
        if (setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
            close(sv[0]);
            close(sv[1]);
            return -1;
        }
    }
    return 0;
}

int blocking_close(int fd) { return close(fd); }

int blocking_recv_byte(int fd) {
    unsigned char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 1 ? c : -1;
}

int blocking_send_byte(int fd, int byte) {
    unsigned char c = (unsigned char)byte;
    return (int)send(fd, &c, 1, 0);
}

int blocking_poll_in(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms);
}

int blocking_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    return nanosleep(&ts, NULL);
}
