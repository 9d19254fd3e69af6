/* A thread-per-connection keep-alive HTTP server in plain C, built without cogent (-pthread
 * only): a blocking accept loop, one pthread_create per connection, a mutex-protected request
 * counter. Run as it is, every connection costs an OS thread; under `cogent-run --threads`,
 * every connection thread is a greenlet of one hub, on one OS thread.
 *
 *   build/examples/threaded_http --port 8080
 *   build/patch/cogent-run --threads -- build/examples/threaded_http --port 8080
 *
 * Options: --port P (0: the OS picks; the port is printed on stdout), --host ADDR (default
 * 127.0.0.1), --stack BYTES (each connection thread's stack size; default libc's).
 * Answers every complete request in a read with "Hello, World!" (13 bytes), as
 * examples/http_hello does; closes when the client does. On SIGTERM/SIGINT it prints the
 * requests served and exits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char kResponse[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_requests;
static unsigned long g_threads_failed;

static int send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void* serve(void* arg) {
    int fd = (int)(intptr_t)arg;
    char buf[8192];
    size_t have = 0;
    char* out = NULL;
    size_t out_cap = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + have, sizeof buf - have, 0);
        if (k <= 0) {
            if (k < 0 && errno == EINTR) continue;
            break;
        }
        have += (size_t)k;
        /* Every complete request in the buffer: one response each, written at once. */
        size_t start = 0, n = 0;
        for (;;) {
            char* end = memmem(buf + start, have - start, "\r\n\r\n", 4);
            if (!end) break;
            start = (size_t)(end - buf) + 4;
            ++n;
        }
        if (n == 0 && have == sizeof buf) break; /* a request larger than the buffer */
        memmove(buf, buf + start, have - start);
        have -= start;
        if (n == 0) continue;
        size_t need = n * (sizeof kResponse - 1);
        if (need > out_cap) {
            free(out);
            out = malloc(need);
            if (!out) break;
            out_cap = need;
        }
        for (size_t i = 0; i < n; ++i)
            memcpy(out + i * (sizeof kResponse - 1), kResponse, sizeof kResponse - 1);
        if (send_all(fd, out, need) != 0) break;
        pthread_mutex_lock(&g_mu);
        g_requests += n;
        pthread_mutex_unlock(&g_mu);
    }
    free(out);
    close(fd);
    return NULL;
}

static void on_stop(int sig) {
    (void)sig;
    char line[96];
    int n = snprintf(line, sizeof line, "served %lu requests (%lu thread creations failed)\n",
                     g_requests, g_threads_failed);
    if (n > 0) (void)!write(1, line, (size_t)n);
    _exit(0);
}

int main(int argc, char** argv) {
    const char* host = "127.0.0.1";
    int port = 8080;
    size_t stack = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--stack") == 0 && i + 1 < argc)
            stack = (size_t)strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--port P] [--host ADDR] [--stack BYTES]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGPIPE, SIG_IGN);

    int lst = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "threaded_http: bad address '%s'\n", host);
        return 2;
    }
    if (bind(lst, (struct sockaddr*)&a, sizeof a) != 0 || listen(lst, 4096) != 0) {
        perror("threaded_http: bind/listen");
        return 1;
    }
    socklen_t len = sizeof a;
    getsockname(lst, (struct sockaddr*)&a, &len);
    printf("listening on %s:%d\n", host, ntohs(a.sin_port));
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack) pthread_attr_setstacksize(&attr, stack);
    for (;;) {
        int fd = accept(lst, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) { /* out of fds: let connections end */
                usleep(10000);
                continue;
            }
            perror("threaded_http: accept");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        int e = pthread_create(&t, &attr, serve, (void*)(intptr_t)fd);
        if (e != 0) {
            /* Out of threads (or of memory maps for their stacks): refuse this connection. */
            pthread_mutex_lock(&g_mu);
            ++g_threads_failed;
            pthread_mutex_unlock(&g_mu);
            close(fd);
        }
    }
}
