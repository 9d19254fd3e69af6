/* http_libev: the baseline of the HTTP benchmark (bench/http.py): a hand-written,
 * single-threaded libev server speaking the http_hello protocol (../DESIGN.md "Named
 * artifacts"): keep-alive HTTP/1.1, every request (ended by a blank line) gets the same
 * 13-byte "Hello, World!" response.
 *
 *   http_libev --port P
 *
 * Written the way a careful C programmer would write it, so that it is a fair yardstick:
 * - one level-triggered ev_io read watcher per connection, started once and left started;
 * - one read() per readiness event (a second one only if the read filled the buffer, since then
 *   more may be waiting);
 * - every complete request in the buffer is answered, all responses go into one output buffer
 *   and out with one write() (pipelined requests cost one write);
 * - the write is attempted directly; a write watcher is armed only if it was partial (and the
 *   read watcher is paused while more than OUT_HIGH bytes wait, so a client that never reads
 *   cannot make the server buffer without bound).
 * The read buffer is READ_BUF bytes, like the other servers of the benchmark. A request that
 * does not fit in it is an error: the connection is closed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { READ_BUF = 8192, OUT_HIGH = 1024 * 1024 };

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

struct conn {
    ev_io rio; /* first member: the watcher pointer is the connection pointer */
    ev_io wio;
    size_t in_len; /* bytes in `in` not yet consumed */
    char *out;     /* pending output: out[out_off, out_len) */
    size_t out_off, out_len, out_cap;
    char in[READ_BUF];
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void conn_close(struct ev_loop *loop, struct conn *c) {
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    close(c->rio.fd);
    free(c->out);
    free(c);
}

/* Appends n copies of the response to the pending output. */
static void append_responses(struct conn *c, size_t n) {
    size_t need = c->out_len + n * RESPONSE_LEN;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need) cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) die("realloc");
        c->out = p;
        c->out_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(c->out + c->out_len, RESPONSE, RESPONSE_LEN);
        c->out_len += RESPONSE_LEN;
    }
}

/* Writes what is pending. Returns 0 when everything went out or the rest waits for the write
 * watcher, -1 if the connection failed (and was closed). */
static int flush(struct ev_loop *loop, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->rio.fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            if (!ev_is_active(&c->wio)) ev_io_start(loop, &c->wio);
            if (c->out_len - c->out_off > OUT_HIGH && ev_is_active(&c->rio))
                ev_io_stop(loop, &c->rio); /* back-pressure: stop reading until drained */
            return 0;
        }
        conn_close(loop, c);
        return -1;
    }
    c->out_off = c->out_len = 0;
    if (ev_is_active(&c->wio)) ev_io_stop(loop, &c->wio);
    if (!ev_is_active(&c->rio)) ev_io_start(loop, &c->rio);
    return 0;
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    flush(loop, (struct conn *)((char *)w - offsetof(struct conn, wio)));
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    struct conn *c = (struct conn *)w;
    for (;;) {
        size_t room = READ_BUF - c->in_len;
        ssize_t n = read(w->fd, c->in + c->in_len, room);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            conn_close(loop, c); /* EOF or error */
            return;
        }
        c->in_len += (size_t)n;

        /* Count the complete requests (each ends with a blank line). */
        size_t done = 0, count = 0;
        for (;;) {
            char *end = memmem(c->in + done, c->in_len - done, "\r\n\r\n", 4);
            if (!end) break;
            done = (size_t)(end - c->in) + 4;
            count++;
        }
        if (done) {
            memmove(c->in, c->in + done, c->in_len - done);
            c->in_len -= done;
        } else if (c->in_len == READ_BUF) {
            conn_close(loop, c); /* request larger than the buffer */
            return;
        }
        if (count) {
            append_responses(c, count);
            if (!ev_is_active(&c->wio) && flush(loop, c) < 0) return;
        }
        if ((size_t)n < room || !ev_is_active(&c->rio))
            return; /* drained (or paused by back-pressure): wait for the next event */
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN) perror("accept4"); /* EMFILE...: the next event retries */
            return;
        }
        struct conn *c = malloc(sizeof *c);
        if (!c) die("malloc");
        c->in_len = 0;
        c->out = NULL;
        c->out_off = c->out_len = c->out_cap = 0;
        ev_io_init(&c->rio, on_read, fd, EV_READ);
        ev_io_init(&c->wio, on_write, fd, EV_WRITE);
        ev_io_start(loop, &c->rio);
    }
}

int main(int argc, char **argv) {
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --port P\n", argv[0]);
            return 2;
        }
    }
    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: %s --port P   (0 <= P <= 65535)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, SOMAXCONN) < 0) die("listen");

    struct ev_loop *loop = EV_DEFAULT;
    ev_io lw;
    ev_io_init(&lw, on_accept, lfd, EV_READ);
    ev_io_start(loop, &lw);
    printf("http_libev listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    ev_run(loop, 0);
    return 0;
}
