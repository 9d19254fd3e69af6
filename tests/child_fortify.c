/* Not a test file: a helper process for tests/test_patch_run.cpp, which runs it with and without
 * cogent-run and compares its output and exit status. A plain C program that knows nothing of
 * cogent, built with -O2 -D_FORTIFY_SOURCE=2 so that glibc's headers turn its read, recv,
 * recvfrom, poll and ppoll into the checked variants (__read_chk, __recv_chk, __recvfrom_chk,
 * __poll_chk, __ppoll_chk), which the shim must interpose as well. A call only becomes a __*_chk
 * call when the buffer's size is known and the length is not a compile-time constant: hence the
 * fixed arrays and the lengths read through a volatile.
 *
 * Without arguments: prints one line per call (its result and errno name) and exits 0, or 1 if
 * a call's result differs from what libc promises. With "overflow CALL" (CALL: read, recv,
 * recvfrom, poll, ppoll): makes that call with a length beyond its buffer, which the checked
 * variant must catch ("*** buffer overflow detected ***", SIGABRT) before anything is read. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if !defined(_FORTIFY_SOURCE) || _FORTIFY_SOURCE < 2 || !defined(__OPTIMIZE__)
#error "child_fortify.c must be built with -O2 -D_FORTIFY_SOURCE=2 (see tests/meson.build)"
#endif

static volatile size_t g_len = 64;      /* not a constant: keeps the _chk variants */
static volatile size_t g_too_long = 65; /* one byte beyond buf[64] */
static volatile nfds_t g_two = 2;
static volatile nfds_t g_three = 3; /* one beyond fds[2] */
static int g_failed;

static const char* errname(int e) {
    switch (e) {
        case 0:
            return "0";
        case EBADF:
            return "EBADF";
        case EAGAIN:
            return "EAGAIN";
        case ENOTSOCK:
            return "ENOTSOCK";
        case EINVAL:
            return "EINVAL";
        case EFAULT:
            return "EFAULT";
        default:
            return "other";
    }
}

static void report(const char* what, long got, long want, int err, int want_err) {
    int ok = got == want && (want >= 0 || err == want_err);
    printf("%s = %ld%s%s%s\n", what, got, got < 0 ? " (" : "", got < 0 ? errname(err) : "",
           got < 0 ? ")" : "");
    if (!ok) {
        fprintf(stderr, "child_fortify: %s returned %ld errno %d, expected %ld errno %d\n", what,
                got, err, want, want_err);
        g_failed = 1;
    }
}

/* Each call has data waiting, so that an unchecked call would return rather than block. */
static int overflow(const char* call, int p[2], int sv[2], int dg[2]) {
    char buf[64];
    struct pollfd fds[2] = {{sv[0], POLLIN, 0}, {dg[0], POLLIN, 0}};
    struct timespec ts = {0, 0};
    if (write(p[1], "x", 1) != 1 || send(sv[1], "x", 1, 0) != 1 || send(dg[1], "x", 1, 0) != 1)
        return 1;
    long r = -2;
    if (strcmp(call, "read") == 0)
        r = read(p[0], buf, g_too_long);
    else if (strcmp(call, "recv") == 0)
        r = recv(sv[0], buf, g_too_long, 0);
    else if (strcmp(call, "recvfrom") == 0)
        r = recvfrom(dg[0], buf, g_too_long, 0, NULL, NULL);
    else if (strcmp(call, "poll") == 0)
        r = poll(fds, g_three, 0);
    else if (strcmp(call, "ppoll") == 0)
        r = ppoll(fds, g_three, &ts, NULL);
    else {
        fprintf(stderr, "child_fortify: unknown call '%s'\n", call);
        return 2;
    }
    printf("%s returned %ld: the overflow was not caught\n", call, r);
    return 1;
}

int main(int argc, char** argv) {
    char buf[64];
    int p[2], sv[2], dg[2];
    long r;
    if (pipe(p) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) != 0) {
        perror("child_fortify: setup");
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "overflow") == 0) return overflow(argv[2], p, sv, dg);
    if (argc != 1) {
        fprintf(stderr, "usage: child_fortify [overflow read|recv|recvfrom|poll|ppoll]\n");
        return 2;
    }

    /* read: data, then nothing (non-blocking), then EOF, then a closed fd. */
    if (write(p[1], "pipe data", 9) != 9) return 1;
    r = read(p[0], buf, g_len);
    report("read(pipe)", r, 9, errno, 0);
    printf("read data: %.*s\n", (int)(r > 0 ? r : 0), buf);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    errno = 0;
    r = read(p[0], buf, g_len);
    report("read(empty nonblocking pipe)", r, -1, errno, EAGAIN);
    close(p[1]);
    r = read(p[0], buf, g_len);
    report("read(pipe at EOF)", r, 0, errno, 0);
    close(p[0]);
    errno = 0;
    r = read(p[0], buf, g_len);
    report("read(closed fd)", r, -1, errno, EBADF);

    /* poll: nothing ready (timeout 0), then readable, then with a closed fd (POLLNVAL). */
    struct pollfd fds[2] = {{sv[0], POLLIN, 0}, {dg[0], POLLIN, 0}};
    r = poll(fds, g_two, 0);
    report("poll(nothing ready, 0 ms)", r, 0, errno, 0);
    r = poll(fds, g_two, 20);
    report("poll(nothing ready, 20 ms)", r, 0, errno, 0);
    if (send(sv[1], "stream", 6, 0) != 6) return 1;
    r = poll(fds, g_two, 1000);
    report("poll(one readable)", r, 1, errno, 0);
    printf("poll revents: %d %d\n", fds[0].revents, fds[1].revents);

    /* recv: the data, then the user's MSG_DONTWAIT, then a non-socket. */
    r = recv(sv[0], buf, g_len, 0);
    report("recv(socketpair)", r, 6, errno, 0);
    printf("recv data: %.*s\n", (int)(r > 0 ? r : 0), buf);
    errno = 0;
    r = recv(sv[0], buf, g_len, MSG_DONTWAIT);
    report("recv(MSG_DONTWAIT, empty)", r, -1, errno, EAGAIN);
    int q[2];
    if (pipe(q) != 0) return 1;
    errno = 0;
    r = recv(q[0], buf, g_len, MSG_DONTWAIT);
    report("recv(pipe)", r, -1, errno, ENOTSOCK);
    close(q[0]);
    close(q[1]);

    /* recvfrom on a datagram pair: message boundaries kept. */
    if (send(dg[1], "one", 3, 0) != 3 || send(dg[1], "datagram", 8, 0) != 8) return 1;
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    r = recvfrom(dg[0], buf, g_len, 0, (struct sockaddr*)&from, &fromlen);
    report("recvfrom(first datagram)", r, 3, errno, 0);
    r = recvfrom(dg[0], buf, g_len, 0, NULL, NULL);
    report("recvfrom(second datagram)", r, 8, errno, 0);
    printf("recvfrom data: %.*s\n", (int)(r > 0 ? r : 0), buf);

    /* ppoll: a timeout, then ready, then an fd that was closed. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    sigset_t mask;
    sigemptyset(&mask);
    struct pollfd pfds[2] = {{sv[0], POLLIN, 0}, {dg[0], POLLIN, 0}};
    r = ppoll(pfds, g_two, &ts, &mask);
    report("ppoll(nothing ready, 20 ms)", r, 0, errno, 0);
    if (send(dg[1], "x", 1, 0) != 1) return 1;
    r = ppoll(pfds, g_two, &ts, NULL);
    report("ppoll(one readable)", r, 1, errno, 0);
    printf("ppoll revents: %d %d\n", pfds[0].revents, pfds[1].revents);
    close(sv[1]);
    close(dg[1]);
    close(dg[0]);
    r = ppoll(pfds, g_two, &ts, NULL);
    report("ppoll(peer closed, fd closed)", r, 2, errno, 0);
    printf("ppoll revents: %d %d\n", pfds[0].revents & (POLLIN | POLLHUP | POLLNVAL),
           pfds[1].revents);
    close(sv[0]);

    /* A sleep, for the time family: nanosleep's remaining time is untouched on success. */
    struct timespec nap = {0, 10 * 1000 * 1000}, rem = {7, 7};
    r = nanosleep(&nap, &rem);
    report("nanosleep(10 ms)", r, 0, errno, 0);

    printf("%s\n", g_failed ? "FAILED" : "ok");
    return g_failed;
}
