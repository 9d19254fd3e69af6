// examples/http_hello over TLS: the keep-alive "Hello, World!" server that bench/https.py
// measures against nginx. Every request - anything ended by a blank line - gets the same 200
// response; the responses to pipelined requests are written together.
//
//   https_hello --port P --cert CERT.pem --key KEY.pem [--threads N] [--host H]
//       Serve until SIGINT or SIGTERM, then exit 0. Port 0 lets the OS pick; the first line on
//       stdout is always "https_hello: listening on HOST:PORT (N threads)".
//   https_hello            (no arguments)
//       Self-check: make a throwaway self-signed certificate for "localhost", serve on an
//       OS-chosen port, connect a verifying cogent client (the certificate as its CA), send a
//       plain, a split and 16 pipelined requests, check the answers, resume the session on a
//       second connection, exit 0 (1 on a mismatch). Any other usage prints help and exits 2.
//
// The server is http_hello's with one change: the handler is wrapped in tls::handler, which
// makes each connection's handshake in its own greenlet (bounded by 10 s) before the loop runs.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cogent/cogent.hpp>
#include <cogent/tls.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";

constexpr std::size_t kInSize = 8192;    // largest request head accepted
constexpr std::size_t kOutSize = 16384;  // responses batched per sendall

// Serve one connection until the peer closes (or sends a request head larger than kInSize).
void serve_connection(cogent::tls::Socket& sock) {
    char in[kInSize];
    char out[kOutSize];
    std::size_t have = 0;  // bytes in `in`
    std::size_t scan = 0;  // where to look for the next "\r\n\r\n"
    for (;;) {
        const std::size_t n = sock.recv(in + have, kInSize - have);
        if (n == 0) return;  // closed by the peer
        have += n;
        std::size_t start = 0;  // first byte of the current (incomplete) request
        std::size_t used = 0;   // bytes in `out`
        for (;;) {
            const void* end = memmem(in + scan, have - scan, "\r\n\r\n", 4);
            if (!end) break;
            start = static_cast<std::size_t>(static_cast<const char*>(end) - in) + 4;
            scan = start;
            if (used + kResponse.size() > kOutSize) {
                sock.sendall(out, used);
                used = 0;
            }
            std::memcpy(out + used, kResponse.data(), kResponse.size());
            used += kResponse.size();
        }
        if (used) sock.sendall(out, used);
        if (start) {
            have -= start;
            if (have) std::memmove(in, in + start, have);
        }
        scan = have > 3 ? have - 3 : 0;
        if (have == kInSize) return;
    }
}

// A peer that resets the connection, or leaves without close_notify in the middle of a record,
// ends it quietly: that is how HTTP clients often leave. Anything else is reported.
void serve_https(cogent::tls::Socket& sock, const cogent::Address&) {
    try {
        serve_connection(sock);
    } catch (const std::system_error& e) {
        const int code = e.code().value();
        if (code != ECONNRESET && code != EPIPE) throw;
    } catch (const cogent::tls::Error& e) {
        if (e.reason() != "unexpected eof while reading") throw;
    }
}

int usage() {
    std::fprintf(stderr,
                 "usage: https_hello --port PORT --cert CERT.pem --key KEY.pem [--threads N] "
                 "[--host HOST]\n"
                 "       https_hello            (self-check on an OS-chosen port)\n");
    return 2;
}

// A throwaway self-signed certificate (P-256) for "localhost" / 127.0.0.1: {cert PEM, key PEM}.
std::pair<std::string, std::string> make_self_signed() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    if (!key || !x) throw std::runtime_error("https_hello: cannot make a key");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    for (const char* ext :
         {"subjectAltName=DNS:localhost,IP:127.0.0.1", "basicConstraints=CA:TRUE"}) {
        const std::string e = ext;
        const auto eq = e.find('=');
        X509_EXTENSION* ex =
            X509V3_EXT_conf(nullptr, &v3, e.substr(0, eq).c_str(), e.substr(eq + 1).c_str());
        if (ex) {
            X509_add_ext(x, ex, -1);
            X509_EXTENSION_free(ex);
        }
    }
    X509_sign(x, key, EVP_sha256());
    auto pem = [](auto write) {
        BIO* b = BIO_new(BIO_s_mem());
        write(b);
        char* data = nullptr;
        const long n = BIO_get_mem_data(b, &data);
        std::string s(data, static_cast<std::size_t>(n));
        BIO_free(b);
        return s;
    };
    std::string cert = pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
    std::string k = pem(
        [&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
    X509_free(x);
    EVP_PKEY_free(key);
    return {cert, k};
}

std::string exchange(cogent::tls::Socket& c, std::string_view request, int expect) {
    c.sendall(request);
    std::string got;
    const std::string_view body = "Hello, World!";
    int seen = 0;
    while (seen < expect) {
        char buf[4096];
        std::size_t n = c.recv(buf, sizeof buf);
        if (n == 0) break;
        got.append(buf, n);
        seen = 0;
        for (std::size_t p = 0; (p = got.find(body, p)) != std::string::npos; p += body.size())
            ++seen;
    }
    return got;
}

int self_check() {
    using namespace std::chrono_literals;
    const auto [cert, key] = make_self_signed();
    auto sctx = cogent::tls::Context::server();
    sctx.use_cert_chain_pem(cert, key);
    auto cctx = cogent::tls::Context(cogent::tls::Context::Role::client);
    cctx.load_verify_pem(cert);
    cogent::StreamServer server(cogent::Address("127.0.0.1", 0),
                                cogent::tls::handler(sctx, serve_https));
    server.start();
    std::printf("https_hello self-check: serving on %s\n", server.address().to_string().c_str());
    bool ok = true;
    auto client = cogent::spawn([&] {
        auto c = cogent::create_connection("localhost", server.address().port(), cctx, 5s);
        std::printf("  handshake          -> %s, %s, certificate for %s\n", c.version().c_str(),
                    c.cipher().c_str(), c.peer_certificate().common_name().c_str());
        const std::string one = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        std::string r = exchange(c, one, 1);
        std::printf("  1 request          -> %zu bytes: %s\n", r.size(),
                    r == kResponse ? "one exact response" : "WRONG");
        ok = ok && r == kResponse;

        c.sendall(one.substr(0, one.size() - 2));
        cogent::sleep(20ms);
        r = exchange(c, one.substr(one.size() - 2), 1);
        std::printf("  1 split request    -> %zu bytes: %s\n", r.size(),
                    r == kResponse ? "one exact response" : "WRONG");
        ok = ok && r == kResponse;

        std::string pipelined, expected;
        for (int i = 0; i < 16; ++i) {
            pipelined += one;
            expected += kResponse;
        }
        r = exchange(c, pipelined, 16);
        std::printf("  16 pipelined       -> %zu bytes: %s\n", r.size(),
                    r == expected ? "16 exact responses" : "WRONG");
        ok = ok && r == expected;
        c.shutdown();
        c.close();

        // A second connection resumes the session (a TLS 1.3 ticket from the first one).
        auto c2 = cogent::create_connection("localhost", server.address().port(), cctx, 5s);
        r = exchange(c2, one, 1);
        std::printf("  second connection  -> %s\n",
                    c2.session_reused() ? "session resumed" : "NOT RESUMED");
        ok = ok && r == kResponse && c2.session_reused();
    });
    client.join();
    if (client.exception()) {
        ok = false;
        std::printf("  the client failed (see above)\n");
    }
    server.stop();
    std::printf("https_hello self-check: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 1) return self_check();
    long port = -1, threads = 1;
    std::string host = "127.0.0.1", certfile, keyfile;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (i + 1 >= argc) return usage();
        char* end = nullptr;
        if (a == "--port") {
            port = std::strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) return usage();
        } else if (a == "--threads") {
            threads = std::strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > 1024) return usage();
        } else if (a == "--host") {
            host = argv[++i];
        } else if (a == "--cert") {
            certfile = argv[++i];
        } else if (a == "--key") {
            keyfile = argv[++i];
        } else {
            return usage();
        }
    }
    if (port < 0 || certfile.empty()) return usage();

    if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    try {
        auto ctx = cogent::tls::Context::server();
        ctx.load_cert_chain(certfile, keyfile);
        cogent::StreamServer server(
            cogent::Address(host, static_cast<std::uint16_t>(port)),
            cogent::tls::handler(ctx, serve_https),
            cogent::ServerOptions{.threads = static_cast<unsigned>(threads)});
        server.start();
        std::printf("https_hello: listening on %s (%ld thread%s)\n",
                    server.address().to_string().c_str(), threads, threads == 1 ? "" : "s");
        std::fflush(stdout);
        std::thread stopper([&] {
            int sig = 0;
            sigwait(&sigs, &sig);
            server.stop(std::chrono::milliseconds(100));
        });
        try {
            server.serve_forever();
        } catch (...) {
            pthread_kill(stopper.native_handle(), SIGTERM);
            stopper.join();
            throw;
        }
        stopper.join();
        std::printf("https_hello: stopped\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "https_hello: %s\n", e.what());
        return 1;
    }
    return 0;
}
