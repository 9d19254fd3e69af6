/* tls_handshakes: the new-connection client of the TLS benchmark (bench/https.py). Plain C on
 * OpenSSL directly (no cogent), so that it measures the server only.
 *
 *   tls_handshakes --port P [--host A] [--mode full|resumed] [--duration S | --count N]
 *                  [--procs K] [--tls 1.3|1.2] [--ca FILE] [--timeout S]
 *
 * K processes (default 4) each connect to A:P (default 127.0.0.1) one connection after the
 * other, until S seconds have passed (default 5) or N connections were made in all. Each
 * connection: TCP connect (TCP_NODELAY), the TLS handshake, one request
 * "GET / HTTP/1.1\r\nHost: x\r\n\r\n", the whole response read (status 200, a Content-Length:
 * 13 body "Hello, World!"), close_notify sent, then the server's close awaited (its FIN), so
 * the server's whole work for the connection falls inside the run.
 *
 *   --mode full     every connection a full handshake (no session offered)
 *   --mode resumed  each process keeps the session of its first connection (TLS 1.3: the
 *                   ticket arrives after the handshake, so it is taken once the response has
 *                   been read) and offers it on every later connection; each of those must be
 *                   resumed (SSL_session_reused), else the run FAILS
 *   --tls 1.3       TLS 1.3 only (the default); 1.2: TLS 1.2 only
 *   --ca FILE       verify the server's certificate against FILE (default: no verification)
 *
 * Prints one line:
 *   tls_handshakes mode=M procs=K conns=N resumed=R errors=E seconds=T per_s=X
 *       tickets_per_conn=F version=V cipher=C group=G
 * (tickets_per_conn: the session tickets the server sent, per connection, averaged) and exits
 * with status 0 if every connection succeeded (and, resumed, every one after the first of each
 * process was resumed), 1 otherwise, 2 for bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
static const char BODY[] = "Hello, World!";

struct result {
    long conns;   /* completed connections */
    long resumed; /* of which SSL_session_reused */
    long errors;
    long tickets; /* session tickets received (new-session callback) */
    char version[16], cipher[64], group[32];
};

static const char *host = "127.0.0.1";
static int port = -1;
static int resumed_mode = 0;
static int tls_version = TLS1_3_VERSION;
static const char *ca_file = NULL;
static double timeout_s = 10;
static long tickets_seen = 0;
static int verbose_errors = 5; /* print the first few errors in full (per process) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int usage(void) {
    fprintf(stderr,
            "usage: tls_handshakes --port P [--host A] [--mode full|resumed] "
            "[--duration S | --count N]\n"
            "                      [--procs K] [--tls 1.3|1.2] [--ca FILE] [--timeout S]\n");
    return 2;
}

static void fail(const char *what) {
    if (verbose_errors > 0) {
        --verbose_errors;
        fprintf(stderr, "tls_handshakes[%d]: %s failed: %s\n", (int)getpid(), what,
                errno ? strerror(errno) : "-");
        ERR_print_errors_fp(stderr);
    }
    ERR_clear_error();
}

/* Counts the session tickets the server sends (called once per ticket, TLS 1.3). Returns 0:
 * the session is not kept by the callback. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    (void)sess;
    ++tickets_seen;
    return 0;
}

static SSL_CTX *make_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, tls_version);
    SSL_CTX_set_max_proto_version(ctx, tls_version);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            fail("loading --ca");
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    /* The new-session callback runs only with client-side caching on; nothing is stored. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    return ctx;
}

static int tcp_connect(void) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Reads one HTTP response: a 200 status, a Content-Length: 13 body "Hello, World!". 0 if so. */
static int read_response(SSL *ssl) {
    char buf[4096];
    size_t have = 0;
    for (;;) {
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            size_t head = (size_t)(end - buf) + 4;
            if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) {
                errno = 0;
                fprintf(stderr, "tls_handshakes: not a 200 response: %.60s\n", buf);
                return -1;
            }
            long length = -1;
            for (char *line = strstr(buf, "\r\n"); line && line < end;
                 line = strstr(line + 2, "\r\n"))
                if (strncasecmp(line + 2, "content-length:", 15) == 0) length = atol(line + 17);
            if (length != (long)(sizeof BODY - 1)) {
                errno = 0;
                fprintf(stderr, "tls_handshakes: Content-Length %ld, want %zu\n", length,
                        sizeof BODY - 1);
                return -1;
            }
            if (have >= head + (size_t)length) {
                if (have > head + (size_t)length || memcmp(buf + head, BODY, (size_t)length) != 0) {
                    errno = 0;
                    fprintf(stderr, "tls_handshakes: wrong body or extra bytes\n");
                    return -1;
                }
                return 0;
            }
        }
        if (have >= sizeof buf - 1) {
            errno = 0;
            fprintf(stderr, "tls_handshakes: response too large\n");
            return -1;
        }
        int n = SSL_read(ssl, buf + have, (int)(sizeof buf - 1 - have));
        if (n <= 0) {
            fail("SSL_read (the response)");
            return -1;
        }
        have += (size_t)n;
    }
}

/* Waits for the server to close the connection (EOF or reset), discarding what it sends (its
 * close_notify). 0 on EOF within the timeout. */
static int await_close(int fd) {
    char buf[512];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) return 0;
            return -1;
        }
    }
}

/* One connection; 0 on success. `*sess` is offered when set (resumed mode), and set from the
 * first connection. */
static int one_connection(SSL_CTX *ctx, SSL_SESSION **sess, struct result *r) {
    int fd = tcp_connect();
    if (fd < 0) {
        fail("connect");
        return -1;
    }
    int rc = -1;
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        fail("SSL_new");
        goto out;
    }
    if (resumed_mode && *sess) {
        /* A fresh copy each time: OpenSSL marks a TLS 1.3 session it resumed as used up
         * (single use, RFC 8446 C.4), and the same ticket is to be offered every time. */
        SSL_SESSION *copy = SSL_SESSION_dup(*sess);
        if (!copy || SSL_set_session(ssl, copy) != 1) {
            SSL_SESSION_free(copy);
            fail("SSL_set_session");
            goto out;
        }
        SSL_SESSION_free(copy);
    }
    if (SSL_connect(ssl) != 1) {
        fail("SSL_connect (the handshake)");
        goto out;
    }
    if (SSL_write(ssl, REQUEST, (int)(sizeof REQUEST - 1)) != (int)(sizeof REQUEST - 1)) {
        fail("SSL_write (the request)");
        goto out;
    }
    if (read_response(ssl) != 0) goto out;
    if (SSL_session_reused(ssl)) ++r->resumed;
    if (r->conns == 0) {
        snprintf(r->version, sizeof r->version, "%s", SSL_get_version(ssl));
        snprintf(r->cipher, sizeof r->cipher, "%s", SSL_get_cipher_name(ssl));
        int nid = SSL_get_negotiated_group(ssl);
        const char *g = nid ? OBJ_nid2sn(nid & ~TLSEXT_nid_unknown) : NULL;
        snprintf(r->group, sizeof r->group, "%s", g ? g : "?");
    }
    if (resumed_mode && !*sess) {
        /* TLS 1.3: the tickets came after the handshake, before the response. */
        *sess = SSL_get1_session(ssl);
        if (!*sess || !SSL_SESSION_is_resumable(*sess)) {
            errno = 0;
            fprintf(stderr, "tls_handshakes: the server sent no resumable session (ticket)\n");
            goto out;
        }
    }
    SSL_shutdown(ssl); /* our close_notify; the server answers with its own and closes */
    if (await_close(fd) != 0) {
        fail("awaiting the server's close");
        goto out;
    }
    rc = 0;
out:
    SSL_free(ssl);
    close(fd);
    return rc;
}

static void child(long count, double deadline, int wfd) {
    struct result r;
    memset(&r, 0, sizeof r);
    SSL_CTX *ctx = make_ctx();
    SSL_SESSION *sess = NULL;
    if (!ctx) {
        fail("SSL_CTX_new");
        r.errors = 1;
    } else {
        while (count > 0 ? r.conns + r.errors < count : now_s() < deadline) {
            if (one_connection(ctx, &sess, &r) == 0) {
                ++r.conns;
            } else {
                ++r.errors;
                if (r.errors >= 100) break; /* something is wrong: stop hammering */
            }
        }
    }
    r.tickets = tickets_seen;
    if (write(wfd, &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
    if (sess) SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
    _exit(0);
}

int main(int argc, char **argv) {
    double duration = 5;
    long count = 0;
    int procs = 4;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (i + 1 >= argc) return usage();
        const char *v = argv[++i];
        char *end = NULL;
        if (strcmp(a, "--port") == 0) {
            port = (int)strtol(v, &end, 10);
            if (*end || port <= 0 || port > 65535) return usage();
        } else if (strcmp(a, "--host") == 0) {
            host = v;
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "full") == 0)
                resumed_mode = 0;
            else if (strcmp(v, "resumed") == 0)
                resumed_mode = 1;
            else
                return usage();
        } else if (strcmp(a, "--duration") == 0) {
            duration = strtod(v, &end);
            if (*end || duration <= 0) return usage();
        } else if (strcmp(a, "--count") == 0) {
            count = strtol(v, &end, 10);
            if (*end || count <= 0) return usage();
        } else if (strcmp(a, "--procs") == 0) {
            procs = (int)strtol(v, &end, 10);
            if (*end || procs < 1 || procs > 256) return usage();
        } else if (strcmp(a, "--tls") == 0) {
            if (strcmp(v, "1.3") == 0)
                tls_version = TLS1_3_VERSION;
            else if (strcmp(v, "1.2") == 0)
                tls_version = TLS1_2_VERSION;
            else
                return usage();
        } else if (strcmp(a, "--ca") == 0) {
            ca_file = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_s = strtod(v, &end);
            if (*end || timeout_s <= 0) return usage();
        } else {
            return usage();
        }
    }
    if (port < 0) return usage();
    if (count > 0 && count < procs) procs = (int)count;
    signal(SIGPIPE, SIG_IGN);

    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    double t0 = now_s(), deadline = t0 + duration;
    pid_t *pids = calloc((size_t)procs, sizeof *pids);
    for (int k = 0; k < procs; ++k) {
        long share = count > 0 ? count / procs + (k < count % procs) : 0;
        pids[k] = fork();
        if (pids[k] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[k] == 0) {
            close(fds[0]);
            child(share, deadline, fds[1]);
        }
    }
    close(fds[1]);
    struct result total;
    memset(&total, 0, sizeof total);
    int failed = 0;
    for (int k = 0; k < procs; ++k) {
        struct result r;
        ssize_t n = read(fds[0], &r, sizeof r);
        if (n != (ssize_t)sizeof r) {
            fprintf(stderr, "tls_handshakes: a client process died without a result\n");
            failed = 1;
            continue;
        }
        if (!total.version[0] && r.version[0]) {
            memcpy(total.version, r.version, sizeof r.version);
            memcpy(total.cipher, r.cipher, sizeof r.cipher);
            memcpy(total.group, r.group, sizeof r.group);
        }
        total.conns += r.conns;
        total.resumed += r.resumed;
        total.errors += r.errors;
        total.tickets += r.tickets;
    }
    for (int k = 0; k < procs; ++k) {
        int st;
        waitpid(pids[k], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    }
    double secs = now_s() - t0;
    printf(
        "tls_handshakes mode=%s procs=%d conns=%ld resumed=%ld errors=%ld seconds=%.3f "
        "per_s=%.1f tickets_per_conn=%.2f version=%s cipher=%s group=%s\n",
        resumed_mode ? "resumed" : "full", procs, total.conns, total.resumed, total.errors, secs,
        total.conns / secs, total.conns ? (double)total.tickets / total.conns : 0.0,
        total.version[0] ? total.version : "?", total.cipher[0] ? total.cipher : "?",
        total.group[0] ? total.group : "?");
    if (resumed_mode) {
        long want = total.conns - procs; /* each process's first connection is a full one */
        if (total.resumed < want) {
            fprintf(stderr,
                    "tls_handshakes: RESUMPTION FAILED: %ld of %ld connections were resumed, "
                    "want %ld (every one after each process's first)\n",
                    total.resumed, total.conns, want);
            failed = 1;
        }
    } else if (total.resumed) {
        fprintf(stderr, "tls_handshakes: %ld connections were resumed in full mode\n",
                total.resumed);
        failed = 1;
    }
    if (total.conns == 0) failed = 1;
    return failed || total.errors ? 1 : 0;
}
