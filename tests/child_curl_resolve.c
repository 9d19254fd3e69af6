/* One libcurl easy fetch, plain C and built without cogent (libcurl only): `child_curl_resolve
 * URL` prints the response status and body, or curl's error, and exits with the CURLcode (0 on
 * success). Debian's libcurl resolves names in a helper pthread (its threaded resolver) that
 * calls getaddrinfo: under `cogent-run --threads` that helper is a green thread, so its lookup
 * goes through cogent's resolver (COGENT_RESOLVER_SERVERS) instead of glibc's (resolv.conf).
 *
 * Also printed: "resolver: threaded" when this libcurl resolves in a helper thread (asynchronous
 * DNS without c-ares), and the most OS threads the process had at any progress callback (curl
 * calls it while the resolve is pending, too). alarm(30) bounds a hang; curl's own limit is
 * CURLOPT_TIMEOUT 10 s. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "child_tasks.h"

static int g_peak_tasks;
static int g_progress_calls;
static int progress(void* p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow) {
    (void)p, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    ++g_progress_calls;
    int n = count_tasks();
    if (n > g_peak_tasks) g_peak_tasks = n;
    return 0;
}

static char g_body[4096];
static size_t g_body_len;
static size_t append(char* p, size_t size, size_t n, void* user) {
    (void)user;
    size_t len = size * n;
    if (len > sizeof g_body - 1 - g_body_len) return 0; /* too long: curl reports an error */
    memcpy(g_body + g_body_len, p, len);
    g_body_len += len;
    return len;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s URL\n", argv[0]);
        return 2;
    }
    alarm(30);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 3;
    const curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
    printf("resolver: %s\n",
           (v->features & CURL_VERSION_ASYNCHDNS) && !v->ares ? "threaded" : "other");
    CURL* h = curl_easy_init();
    if (!h) return 3;
    curl_easy_setopt(h, CURLOPT_URL, argv[1]);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy from the environment */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
    g_peak_tasks = count_tasks();
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        g_body[g_body_len] = '\0';
        printf("status %ld, body: %s\n", status, g_body);
    } else {
        printf("curl error %d: %s\n", (int)rc, curl_easy_strerror(rc));
    }
    printf("os_threads peak %d over %s progress calls\n", g_peak_tasks,
           g_progress_calls > 0 ? "some" : "no");
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return (int)rc;
}
