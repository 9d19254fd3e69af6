/* conn10k: the "10,000 concurrent connections on one thread" check of the HTTP benchmark
 * (bench/http.py). A plain epoll client (no cogent), so that it measures the server only.
 *
 *   conn10k --port P [--conns N] [--rounds R] [--batch B] [--timeout S] [--sources K]
 *
 * 1. Raises its RLIMIT_NOFILE soft limit to the hard limit (it needs N + a few descriptors).
 * 2. Opens N connections (default 10000) to 127.0.0.1:P, at most B (default 500) connecting at
 *    a time so that the server's accept queue never overflows (an overflow does not fail, but
 *    the kernel drops the SYN and the client retries a second later), sends one request on
 *    each and reads its response. Every connection then stays open. Connections come from K
 *    loopback source addresses in turn (127.0.0.1, .2, ...; default one per 20,000
 *    connections): one source address to one server port has about 28,000 ephemeral ports.
 * 3. R rounds (default 3): with all N connections open, sends one request on every connection
 *    at once, then reads every response.
 * Every response must be byte-for-byte the http_hello response, and arrive before the timeout
 * (default 60 s per phase); a connect failure, reset, early close, extra or wrong byte is an
 * error. Prints one line per phase and a final line:
 *   conn10k conns=N rounds=R errors=E open_s=T rounds_s=T total_s=T
 * and exits with status 0 if and only if there was no error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
#define REQUEST_LEN (sizeof REQUEST - 1)
static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

enum state { NEW, IDLE, CONNECTING, WAITING, FAILED };

struct conn {
    int fd;
    enum state st;
    unsigned got; /* response bytes received in this phase */
    char buf[RESPONSE_LEN];
};

static struct conn *conns;
static int nconns, epfd;
static long errors;
static int verbose_errors = 10; /* print the first few errors in full */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(struct conn *c, const char *what, int err) {
    errors++;
    if (verbose_errors > 0) {
        verbose_errors--;
        fprintf(stderr, "conn10k: connection %ld: %s%s%s\n", (long)(c - conns), what,
                err ? ": " : "", err ? strerror(err) : "");
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->st = FAILED;
}

/* Sends the request on c and waits for the response. */
static void send_request(struct conn *c) {
    ssize_t n;
    do n = write(c->fd, REQUEST, REQUEST_LEN);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)REQUEST_LEN) {
        /* A fresh 36-byte write into an empty socket buffer never goes out in part. */
        fail(c, n < 0 ? "write" : "short write", n < 0 ? errno : 0);
        return;
    }
    c->got = 0;
    c->st = WAITING;
}

/* Reads what c has; returns 1 when its response is complete (and correct). */
static int on_readable(struct conn *c) {
    char tmp[256];
    ssize_t n;
    do n = read(c->fd, tmp, sizeof tmp);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) {
        fail(c, n == 0 ? "server closed the connection" : "read", n == 0 ? 0 : errno);
        return 0;
    }
    if (c->st != WAITING || c->got + (size_t)n > RESPONSE_LEN) {
        fail(c, "unexpected bytes from the server", 0);
        return 0;
    }
    memcpy(c->buf + c->got, tmp, (size_t)n);
    c->got += (unsigned)n;
    if (c->got < RESPONSE_LEN) return 0;
    if (memcmp(c->buf, RESPONSE, RESPONSE_LEN) != 0) {
        fail(c, "wrong response", 0);
        return 0;
    }
    c->st = IDLE;
    return 1;
}

static int nsources = 0; /* loopback source addresses to spread the connections over */

static int open_one(struct conn *c, const struct sockaddr_in *sa) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, "socket", errno);
        return 0;
    }
    if (nsources > 1) {
        /* bind the address only: connect picks the port, unique per 4-tuple */
        int one = 1;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)((c - conns) % nsources));
        if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
            bind(c->fd, (const struct sockaddr *)&src, sizeof src) < 0) {
            fail(c, "bind", errno);
            return 0;
        }
    }
    c->st = CONNECTING;
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        fail(c, "connect", errno);
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (unsigned)(c - conns)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fail(c, "epoll_ctl", errno);
        return 0;
    }
    return 1;
}

/* The connection finished connecting: check the outcome, send the first request. */
static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail(c, "connect", err);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)(c - conns)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        fail(c, "epoll_ctl", errno);
        return;
    }
    send_request(c);
}

/* Runs the event loop until `pending` connections are done (or failed) or the deadline. The
 * open phase (sa != NULL) also starts new connections while fewer than `batch` are busy. */
static void run(long pending, const struct sockaddr_in *sa, int batch, double deadline) {
    static struct epoll_event evs[1024];
    int next = 0, busy = 0;
    for (;;) {
        while (sa && next < nconns && busy < batch) {
            if (open_one(&conns[next], sa))
                busy++;
            else
                pending--;
            next++;
        }
        if (pending <= 0) return;
        double left = deadline - now_s();
        if (left <= 0) break;
        int n = epoll_wait(epfd, evs, 1024, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = &conns[evs[i].data.u32];
            if (c->st == FAILED) continue; /* closed by an earlier event of this batch */
            int was_busy = c->st == CONNECTING || c->st == WAITING;
            if (c->st == CONNECTING)
                on_connected(c);
            else if (on_readable(c))
                ; /* done */
            else if (c->st != FAILED)
                continue; /* partial response */
            /* done, failed or (after connect) now waiting for its response */
            if (c->st == IDLE || c->st == FAILED) {
                if (was_busy) {
                    pending--;
                    busy--;
                }
            }
        }
    }
    for (int i = 0; i < nconns; i++) {
        if (conns[i].st == CONNECTING || conns[i].st == WAITING)
            fail(&conns[i], "timed out", 0);
        else if (conns[i].st == NEW)
            fail(&conns[i], "not even started before the timeout", 0);
    }
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --port P [--conns N] [--rounds R] [--batch B] [--timeout S] [--sources K]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    int port = -1, rounds = 3, batch = 500;
    double timeout = 60;
    nconns = 10000;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage(argv[0]);
        const char *opt = argv[i], *val = argv[++i];
        if (strcmp(opt, "--port") == 0)
            port = atoi(val);
        else if (strcmp(opt, "--conns") == 0)
            nconns = atoi(val);
        else if (strcmp(opt, "--rounds") == 0)
            rounds = atoi(val);
        else if (strcmp(opt, "--batch") == 0)
            batch = atoi(val);
        else if (strcmp(opt, "--timeout") == 0)
            timeout = atof(val);
        else if (strcmp(opt, "--sources") == 0)
            nsources = atoi(val);
        else
            usage(argv[0]);
    }
    if (port <= 0 || port > 65535 || nconns <= 0 || rounds < 0 || batch <= 0 || timeout <= 0 ||
        nsources < 0 || nsources > 254)
        usage(argv[0]);
    if (nsources == 0) nsources = 1 + nconns / 20000;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)nconns + 16) {
        fprintf(stderr, "conn10k: RLIMIT_NOFILE is %lu, %d connections need %d: raise it\n",
                (unsigned long)rl.rlim_cur, nconns, nconns + 16);
        return 2;
    }

    conns = calloc((size_t)nconns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0) {
        perror("conn10k: setup");
        return 1;
    }
    for (int i = 0; i < nconns; i++) conns[i].fd = -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    double t0 = now_s();
    run(nconns, &sa, batch, t0 + timeout);
    double t1 = now_s();
    long open = 0;
    for (int i = 0; i < nconns; i++) open += conns[i].st == IDLE;
    printf("open: %ld of %d connections open and answered in %.3f s, errors=%ld\n", open, nconns,
           t1 - t0, errors);
    fflush(stdout);

    double rounds_s = 0;
    for (int r = 1; r <= rounds; r++) {
        double r0 = now_s();
        long pending = 0;
        for (int i = 0; i < nconns; i++) {
            if (conns[i].st != IDLE) continue;
            send_request(&conns[i]);
            pending += conns[i].st == WAITING;
        }
        run(pending, NULL, 0, r0 + timeout);
        double r1 = now_s();
        long ok = 0;
        for (int i = 0; i < nconns; i++) ok += conns[i].st == IDLE;
        printf("round %d: %ld requests on %ld open connections answered in %.3f s, errors=%ld\n", r,
               pending, ok, r1 - r0, errors);
        fflush(stdout);
        rounds_s += r1 - r0;
    }
    double t2 = now_s();
    for (int i = 0; i < nconns; i++) {
        if (conns[i].fd >= 0) close(conns[i].fd);
    }
    printf("conn10k conns=%d rounds=%d errors=%ld open_s=%.3f rounds_s=%.3f total_s=%.3f\n", nconns,
           rounds, errors, t1 - t0, rounds_s, t2 - t0);
    return errors == 0 ? 0 : 1;
}
