// TLS (include/cogent/tls.hpp, libcogent_tls): cogent's client against `openssl s_server`, its
// server (StreamServer + tls::handler) against `openssl s_client`, curl and Python's ssl module,
// cogent against cogent (sessions, ALPN, SNI, client certificates, versions, loading
// certificates and keys), bad certificates and bad peers (plain text, truncated and stalled
// handshakes, a close in the middle of a record, renegotiation), socket semantics (timeouts,
// close from another greenlet, full duplex, concurrent readers, shutdown, unwrap) and a load
// of 1,000 concurrent connections.
//
// Everything runs on 127.0.0.1 with ports the OS picks. The certificates are made once per run
// by the openssl command in a temporary directory: a test CA, a leaf for localhost (DNS and IP
// 127.0.0.1) and one for other.test signed by it, a client certificate, an expired leaf, a
// self-signed one, a second unrelated CA with its own localhost leaf, the localhost key
// encrypted with a password. Without the openssl command every case skips; the curl and
// Python cases skip without their program (each is its own meson test, tests/meson.build).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cogent/tls.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "real_servers.hpp"  // TempDir, free_loopback_port
#include "support.hpp"

using namespace cogent_test;
using namespace std::chrono_literals;
namespace tls = cogent::tls;
namespace sp = cogent::subprocess;
using cogent::Address;
using cogent::Socket;
using cogent::SocketTimeout;
using cogent::StreamServer;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Programs and certificates

// The full path of `name` found in PATH (as the shell would run it), or "" when there is none.
std::string find_program(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t pos = 0;
    while (pos <= dirs.size()) {
        std::size_t end = dirs.find(':', pos);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(pos, end - pos);
        if (dir.empty()) dir = ".";
        std::string p = dir + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
        pos = end + 1;
    }
    return "";
}

// Python 3 for the ssl-module case: Debian's own first (the package python3), then PATH.
std::string python3() {
    if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
    return find_program("python3");
}

// The script that makes every certificate (run by /bin/sh in the certificate directory).
// Subjects are written O first, so that RFC 2253 (last RDN first) reads "CN=...,O=...".
const char* const gen_script = R"SH(set -e
cat > test.cnf <<'EOF'
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[localhost]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[other]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.test
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
[ca]
default_ca = test_ca
[test_ca]
database = cadb/index.txt
new_certs_dir = cadb
serial = cadb/serial
default_md = sha256
policy = any_name
email_in_dn = no
unique_subject = no
copy_extensions = none
[any_name]
organizationName = optional
commonName = supplied
EOF
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
for ca in ca ca2; do
  openssl req -x509 -new $EC -keyout $ca.key -out $ca.pem -days 3650 -config test.cnf \
    -extensions v3_ca -subj "/O=cogent test/CN=cogent test $ca"
done
leaf() {  # file, CN, extensions section, issuing CA
  openssl req -new $EC -keyout $1.key -out $1.csr -config test.cnf -subj "/O=cogent test/CN=$2"
  openssl x509 -req -in $1.csr -CA $4.pem -CAkey $4.key -CAcreateserial -days 30 -sha256 \
    -extfile test.cnf -extensions $3 -out $1.pem
}
leaf localhost localhost localhost ca
leaf other other.test other ca
leaf client "cogent client" client ca
leaf localhost2 localhost localhost ca2
mkdir -p cadb && : > cadb/index.txt && echo 1000 > cadb/serial
openssl ca -batch -config test.cnf -cert ca.pem -keyfile ca.key -in localhost.csr \
  -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -extensions localhost \
  -notext
openssl req -x509 -new $EC -keyout selfsigned.key -out selfsigned.pem -days 30 -config test.cnf \
  -extensions localhost -subj "/O=cogent self-signed/CN=localhost"
openssl pkey -in localhost.key -aes256 -passout pass:cogent-secret -out localhost_enc.key
cat localhost.pem ca.pem > localhost_chain.pem
openssl verify -CAfile ca.pem localhost.pem other.pem client.pem
)SH";

struct Certs {
    std::string dir;
    std::string operator()(const std::string& file) const { return dir + "/" + file; }
};

// The certificates (made on first use, removed at exit). REQUIREs that the script worked.
const Certs& certs() {
    static std::optional<TempDir> dir;
    static Certs c;
    static std::string failure;
    if (!dir) {
        dir.emplace("cogent-tls");
        c.dir = dir->path();
        {
            std::ofstream f(c("gen.sh"));
            f << gen_script;
        }
        ChildResult r = run_child("/bin/sh -c 'cd \"" + c.dir + "\" && exec /bin/sh gen.sh'");
        if (r.status != 0) failure = "making the test certificates failed:\n" + r.output;
    }
    REQUIRE_MESSAGE(failure.empty(), failure);
    return c;
}

#define NEED_CERTS(var)                                                             \
    if (find_program("openssl").empty())                                            \
        COGENT_SKIP(                                                                \
            "the openssl command is not installed (Debian package openssl), so no " \
            "test certificates can be made");                                       \
    const Certs& var = certs()

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary);
    f << data;
}

// ---------------------------------------------------------------------------------------------
// Contexts and connections

tls::Context server_ctx(const Certs& c, const std::string& cert = "localhost",
                        std::string key = "") {
    auto ctx = tls::Context::server();
    if (key.empty()) key = cert;
    ctx.load_cert_chain(c(cert + ".pem"), c(key + ".key"));
    return ctx;
}

// A client context trusting only `ca` (no system store): verification and name checks on.
tls::Context client_ctx(const Certs& c, const std::string& ca = "ca") {
    tls::Context ctx(tls::Context::Role::client);
    ctx.load_verify_locations(c(ca + ".pem"));
    return ctx;
}

// A TCP connection to `a`, every call bounded by 20 s.
Socket tcp_connect(const Address& a) {
    Socket s(AF_INET, SOCK_STREAM);
    s.set_timeout(20s);
    s.connect(a);
    return s;
}

// TLS over a new TCP connection to `a` (server name `host`), not yet handshaken.
tls::Socket tls_socket(const Address& a, const tls::Context& ctx,
                       const std::string& host = "localhost", tls::SocketOptions o = {}) {
    o.server_hostname = host;
    return tls::Socket(tcp_connect(a), ctx, std::move(o));
}

// Same, handshake made.
tls::Socket connect_tls(const Address& a, const tls::Context& ctx,
                        const std::string& host = "localhost", tls::SocketOptions o = {}) {
    tls::Socket s = tls_socket(a, ctx, host, std::move(o));
    s.handshake();
    return s;
}

// Up to `n` bytes (fewer when the peer ends the stream first).
std::string read_n(tls::Socket& s, std::size_t n) {
    std::string out;
    std::vector<char> buf(64 * KiB);
    while (out.size() < n) {
        std::size_t k = s.recv(buf.data(), std::min(buf.size(), n - out.size()));
        if (k == 0) break;
        out.append(buf.data(), k);
    }
    return out;
}

// Everything until the end of the stream (at most `limit` bytes).
std::string read_all(tls::Socket& s, std::size_t limit = 64 * MiB) {
    std::string out;
    char buf[16 * KiB];
    while (out.size() < limit) {
        std::size_t k = s.recv(buf, sizeof buf);
        if (k == 0) break;
        out.append(buf, k);
    }
    return out;
}

// Plain socket: read until the peer closes (0) or fails; the bytes read and how it ended.
std::pair<std::string, std::string> plain_read_to_end(Socket& s) {
    std::string out;
    char buf[4096];
    try {
        while (std::size_t n = s.recv(buf, sizeof buf)) out.append(buf, n);
        return {out, "eof"};
    } catch (const SocketTimeout& e) {
        return {out, std::string("timeout: ") + e.what()};
    } catch (const std::system_error& e) {
        return {out, "errno " + std::to_string(e.code().value())};
    }
}

void echo(tls::Socket& s, const Address&) {
    char buf[16 * KiB];
    while (std::size_t n = s.recv(buf, sizeof buf)) s.sendall(buf, n);
}

// One echo round trip over a new connection: true when the bytes came back exactly.
bool echo_ok(const Address& a, const tls::Context& ctx, const std::string& msg = "ping") {
    tls::Socket c = connect_tls(a, ctx);
    c.sendall(msg);
    return read_n(c, msg.size()) == msg;
}

// The strings joined with '|' (for readable comparisons in CHECKs).
std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "|" : "") + v[i];
    return out;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// What kind of exception e is, most derived first.
std::string kind_of(const std::exception& e) {
    if (dynamic_cast<const tls::VerificationError*>(&e)) return "VerificationError";
    if (dynamic_cast<const tls::Error*>(&e)) return "Error";
    if (dynamic_cast<const SocketTimeout*>(&e)) return "SocketTimeout";
    if (auto se = dynamic_cast<const std::system_error*>(&e))
        return "system_error " + std::to_string(se->code().value());
    if (dynamic_cast<const std::invalid_argument*>(&e)) return "invalid_argument";
    return "other";
}

// How f() ended: "ok", "eof" when it returned 0 (for recv-like calls), or the exception kind.
template <class F>
std::string outcome_of(F&& f, std::string* what = nullptr) {
    try {
        if constexpr (std::is_void_v<decltype(f())>) {
            f();
            return "ok";
        } else {
            return f() ? "ok" : "eof";
        }
    } catch (const std::exception& e) {
        if (what) *what = e.what();
        return kind_of(e);
    }
}

// The exception of type E that f() throws; FAILs (and returns nullopt) when it throws none.
template <class E, class F>
std::optional<E> thrown(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e;
    }
    FAIL_CHECK("no exception was thrown");
    return std::nullopt;
}

// The handshake failures a server reports through HandlerOptions::on_handshake_error.
struct HandshakeLog {
    std::vector<std::string> kinds, whats, reasons;
    tls::HandlerOptions options(cogent::TimeoutArg timeout = 10s) {
        tls::HandlerOptions o;
        o.handshake_timeout = timeout;
        o.on_handshake_error = [this](const std::exception& e, const Address& peer) {
            CHECK(peer.host() == "127.0.0.1");
            kinds.push_back(kind_of(e));
            whats.push_back(e.what());
            auto te = dynamic_cast<const tls::Error*>(&e);
            reasons.push_back(te ? te->reason() : "");
        };
        return o;
    }
};

// Yield until pred() holds, for at most `limit`.
template <class P>
bool eventually(P pred, std::chrono::milliseconds limit = 10s) {
    auto t0 = Clock::now();
    while (!pred()) {
        if (Clock::now() - t0 > limit) return false;
        cogent::sleep(2ms);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Byte patterns

// For peers in other programs (Python): byte i of stream `seed`.
std::string simple_pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = char((i * 131 + (i >> 9) + seed) & 255);
    return s;
}

// In-process streams: stream `id` is table()[offset(id) + i]; the table repeats a pseudo-random
// block of a prime length, so streams differ and every byte is checked with memcmp.
constexpr std::size_t table_period = 65521;
constexpr std::size_t max_stream = 8 * MiB;

const char* table() {
    static const std::string t = [] {
        std::string s(table_period + max_stream, '\0');
        std::uint32_t x = 2463534242u;
        for (std::size_t i = 0; i < table_period; ++i) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s[i] = char(x >> 24);
        }
        for (std::size_t i = table_period; i < s.size(); ++i) s[i] = s[i - table_period];
        return s;
    }();
    return t.data();
}

const char* stream_bytes(unsigned id) { return table() + (std::size_t(id) * 7919) % table_period; }

// Send stream `id`'s first `size` bytes in chunks.
void send_stream(tls::Socket& s, unsigned id, std::size_t size, std::size_t chunk = 256 * KiB) {
    const char* p = stream_bytes(id);
    for (std::size_t pos = 0; pos < size; pos += chunk)
        s.sendall(p + pos, std::min(chunk, size - pos));
}

// Read `size` bytes and compare them with stream `id`: "" when exact, else what went wrong.
std::string recv_stream(tls::Socket& s, unsigned id, std::size_t size) {
    const char* want = stream_bytes(id);
    std::vector<char> buf(16 * KiB);
    std::size_t pos = 0;
    while (pos < size) {
        std::size_t k = s.recv(buf.data(), std::min(buf.size(), size - pos));
        if (k == 0)
            return "stream ended after " + std::to_string(pos) + " of " + std::to_string(size) +
                   " bytes";
        if (std::memcmp(buf.data(), want + pos, k) != 0) {
            std::size_t i = 0;
            while (buf[i] == want[pos + i]) ++i;
            return "byte " + std::to_string(pos + i) + " differs";
        }
        pos += k;
    }
    return "";
}

// ---------------------------------------------------------------------------------------------
// Misc

// A ClientHello as OpenSSL's client makes it (for localhost), from memory BIOs: the bytes a
// real client sends first.
std::string client_hello() {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx);
    SSL* ssl = SSL_new(ctx);
    REQUIRE(ssl);
    BIO* rb = BIO_new(BIO_s_mem());
    BIO* wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_tlsext_host_name(ssl, "localhost");
    CHECK(SSL_connect(ssl) == -1);  // wants the ServerHello
    char* p = nullptr;
    long n = BIO_get_mem_data(wb, &p);
    std::string hello(p, std::size_t(n > 0 ? n : 0));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    REQUIRE(hello.size() > 100);
    REQUIRE(hello[0] == '\x16');  // a handshake record
    return hello;
}

// Raises RLIMIT_NOFILE's soft limit to the hard one for its lifetime; ok() when at least
// `need` fds are allowed.
class NofileRaised {
public:
    explicit NofileRaised(rlim_t need) {
        ::getrlimit(RLIMIT_NOFILE, &old_);
        rlimit r = old_;
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
        rlimit now{};
        ::getrlimit(RLIMIT_NOFILE, &now);
        ok_ = now.rlim_cur == RLIM_INFINITY || now.rlim_cur >= need;
        limit_ = now.rlim_cur;
    }
    ~NofileRaised() { ::setrlimit(RLIMIT_NOFILE, &old_); }
    bool ok() const noexcept { return ok_; }
    rlim_t limit() const noexcept { return limit_; }

private:
    rlimit old_{};
    bool ok_ = false;
    rlim_t limit_ = 0;
};

// True when something listens on 127.0.0.1:port (/proc/net/tcp, without connecting: a probe
// connection would be a client to the server).
bool listening_on(std::uint16_t port) {
    std::ifstream f("/proc/net/tcp");
    std::string line;
    char want[32];
    std::snprintf(want, sizeof want, "0100007F:%04X", unsigned(port));
    std::getline(f, line);
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string sl, local, remote, st;
        ls >> sl >> local >> remote >> st;
        if (local == want && st == "0A") return true;
    }
    return false;
}

// `openssl s_server` on 127.0.0.1 (a port picked free) with `args`, -quiet: what a client sends
// goes to its stdout (collected here), what is written to its stdin goes to the client.
class SServer {
public:
    SServer(const Certs& c, const std::vector<std::string>& args) {
        port_ = free_loopback_port();
        std::vector<std::string> argv = {
            "openssl", "s_server",         "-accept", "127.0.0.1:" + std::to_string(port_),
            "-cert",   c("localhost.pem"), "-key",    c("localhost.key"),
            "-quiet",  "-naccept",         "1"};
        argv.insert(argv.end(), args.begin(), args.end());
        sp::Options o;
        o.stdin = sp::PIPE;
        o.stdout = sp::PIPE;
        o.stderr = sp::PIPE;
        child_.emplace(argv, o);
        out_reader_ = cogent::spawn([this] {
            for (std::string part; !(part = child_->stdout().read()).empty();) out_ += part;
        });
        err_reader_ = cogent::spawn([this] { err_ = child_->stderr().read_all(); });
        ready_ = eventually([&] { return listening_on(port_) || child_->poll(); }, 20s) &&
                 !child_->poll();
    }
    ~SServer() {
        try {
            if (child_ && !child_->poll()) {
                child_->kill();
                child_->wait(10s);
            }
            out_reader_.join(10s);
            err_reader_.join(10s);
        } catch (...) {
        }
        if (!out_reader_.dead()) out_reader_.kill();
        if (!err_reader_.dead()) err_reader_.kill();
    }
    SServer(const SServer&) = delete;
    SServer& operator=(const SServer&) = delete;
    // Whether it listens (else it exited or did not listen within 20 s: see errors()).
    bool ready() const noexcept { return ready_; }
    std::uint16_t port() const noexcept { return port_; }
    Address address() const { return Address("127.0.0.1", port_); }
    // What the client sent so far.
    const std::string& received() const noexcept { return out_; }
    const std::string& errors() const noexcept { return err_; }
    sp::Popen& child() { return *child_; }
    // Wait for it to exit (then for its output to be read); its status.
    int wait() {
        int rc = child_->wait(20s);
        out_reader_.join(10s);
        err_reader_.join(10s);
        return rc;
    }

private:
    std::uint16_t port_ = 0;
    bool ready_ = false;
    std::optional<sp::Popen> child_;
    std::string out_, err_;
    cogent::Greenlet<void> out_reader_, err_reader_;
};

// Run a program to its end (at most 60 s), output captured.
sp::CompletedProcess run(std::vector<std::string> argv, std::optional<std::string> input = {}) {
    sp::RunOptions o;
    o.capture_output = true;
    o.timeout = 60s;
    o.input = std::move(input);
    return sp::run(std::move(argv), o);
}

// The number of connections for the load test: 1,000 (COGENT_TLS_LOAD_CONNECTIONS overrides, for
// experiments). The ASan build runs it in about the same time as the normal one.
int load_connections() {
    if (const char* v = std::getenv("COGENT_TLS_LOAD_CONNECTIONS"))
        return std::max(1, std::atoi(v));
    return 1000;
}

}  // namespace

TEST_SUITE_BEGIN("tls");

// =============================================================================================
// 1. cogent's client against openssl s_server

TEST_CASE_FIXTURE(LeakCheck,
                  "client against openssl s_server: bytes both ways, ALPN, version, "
                  "the server's certificate") {
    NEED_CERTS(c);
    for (const char* version : {"-tls1_3", "-tls1_2"}) {
        CAPTURE(version);
        SServer server(c, {version, "-alpn", "foo,bar"});
        REQUIRE_MESSAGE(server.ready(), "openssl s_server did not start: " << server.errors());
        auto ctx = client_ctx(c);
        ctx.set_alpn_protocols({"bar", "baz"});
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(s.handshake_done());
        CHECK(s.version() == (std::string(version) == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"));
        CHECK(s.alpn_protocol() == "bar");
        CHECK_FALSE(s.cipher().empty());
        CHECK_FALSE(s.session_reused());
        CHECK(s.peer_address() == server.address());
        tls::Certificate cert = s.peer_certificate();
        REQUIRE(cert);
        CHECK(cert.common_name() == "localhost");
        CHECK(joined(cert.dns_names()) == "localhost");
        CHECK(joined(cert.ip_addresses()) == "127.0.0.1");
        CHECK(cert.subject() == "CN=localhost,O=cogent test");
        CHECK(cert.issuer() == "CN=cogent test ca,O=cogent test");
        CHECK(s.peer_chain().size() >= 1);

        // Client to server: s_server writes what it receives to its stdout.
        const std::size_t up = 300 * KiB;
        send_stream(s, 1, up, 7 * KiB + 13);
        REQUIRE(eventually([&] { return server.received().size() >= up; }, 20s));
        CHECK(server.received() == std::string(stream_bytes(1), up));

        // Server to client: s_server sends what it reads on its stdin.
        const std::size_t down = 200 * KiB;
        server.child().stdin().write(std::string_view(stream_bytes(2), down));
        CHECK(recv_stream(s, 2, down) == "");

        // Its stdin ending closes the connection: the stream ends (close_notify).
        server.child().stdin().close();
        CHECK(s.recv(std::size_t(100)) == "");
        s.close();
        CHECK(server.wait() == 0);
        CHECK(server.received().size() == up);
    }
}

TEST_CASE_FIXTURE(LeakCheck,
                  "client against openssl s_server: create_connection to 127.0.0.1 "
                  "checks the certificate's IP address") {
    NEED_CERTS(c);
    SServer server(c, {});
    REQUIRE_MESSAGE(server.ready(), "openssl s_server did not start: " << server.errors());
    tls::Socket s = cogent::create_connection("127.0.0.1", server.port(), client_ctx(c), 20s);
    CHECK(s.handshake_done());
    CHECK(s.version() == "TLSv1.3");
    CHECK(s.timeout().value() == cogent::Duration(20s));
    CHECK(s.alpn_protocol() == "");
    s.sendall("over IP\n");
    REQUIRE(eventually([&] { return server.received().size() >= 8; }, 20s));
    CHECK(server.received() == "over IP\n");
    server.child().stdin().close();
    char b;
    CHECK(s.recv(&b, 1) == 0);
    s.close();
    CHECK(server.wait() == 0);
}

// =============================================================================================
// 2. cogent's server against openssl s_client, curl and Python

TEST_CASE_FIXTURE(LeakCheck, "server against openssl s_client: echo, byte-exact") {
    NEED_CERTS(c);
    const std::string data = std::string(stream_bytes(3), 256 * KiB);
    std::string received, version;
    int handled = 0;
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(
                            server_ctx(c),
                            [&](tls::Socket& s, const Address&) {
                                version = s.version();
                                char buf[16 * KiB];
                                while (received.size() < data.size()) {
                                    std::size_t n = s.recv(buf, sizeof buf);
                                    if (n == 0) break;
                                    received.append(buf, n);
                                    s.sendall(buf, n);
                                }
                                s.shutdown();  // close_notify: s_client then exits
                                ++handled;
                            },
                            log.options()));
    server.start();
    auto r = run(
        {"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(server.address().port()),
         "-servername", "localhost", "-verify_hostname", "localhost", "-CAfile", c("ca.pem"),
         "-verify_return_error", "-quiet"},
        data);
    INFO("s_client stderr: " << r.stderr);
    CHECK(r.returncode == 0);
    CHECK(handled == 1);
    CHECK(version == "TLSv1.3");
    CHECK(received == data);
    CHECK(r.stdout == data);
    CHECK(log.kinds.empty());
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "server against curl: an HTTPS POST and its answer, byte-exact, "
                  "ALPN http/1.1") {
    NEED_CERTS(c);
    const std::string curl = find_program("curl");
    if (curl.empty()) COGENT_SKIP("curl is not installed (Debian package curl)");
    const std::string body = simple_pattern(300 * KiB, 5);
    const std::string answer = simple_pattern(200 * KiB, 6);
    write_file(c("post.bin"), body);
    std::string got_body, alpn, request_line;
    HandshakeLog log;
    auto sctx = server_ctx(c);
    sctx.set_alpn_protocols({"http/1.1"});
    StreamServer server(
        Address("127.0.0.1", 0),
        tls::handler(
            sctx,
            [&](tls::Socket& s, const Address&) {
                alpn = s.alpn_protocol();
                std::string in;
                char buf[16 * KiB];
                std::size_t head_end;
                while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
                    std::size_t n = s.recv(buf, sizeof buf);
                    if (n == 0) return;
                    in.append(buf, n);
                }
                request_line = in.substr(0, in.find("\r\n"));
                std::string head = in.substr(0, head_end);
                std::transform(head.begin(), head.end(), head.begin(),
                               [](unsigned char ch) { return std::tolower(ch); });
                auto cl = head.find("content-length:");
                CHECK(cl != std::string::npos);
                if (cl == std::string::npos) return;
                std::size_t length = std::stoul(head.substr(cl + 15));
                got_body = in.substr(head_end + 4);
                while (got_body.size() < length) {
                    std::size_t n = s.recv(buf, sizeof buf);
                    if (n == 0) break;
                    got_body.append(buf, n);
                }
                s.sendall("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(answer.size()) +
                          "\r\nConnection: close\r\n\r\n");
                s.sendall(answer);
                s.shutdown();
            },
            log.options()));
    server.start();
    const std::string port = std::to_string(server.address().port());
    auto r = run({curl, "-sS", "--noproxy", "*", "--max-time", "30", "--cacert", c("ca.pem"),
                  "--resolve", "localhost:" + port + ":127.0.0.1", "-H", "Expect:", "--data-binary",
                  "@" + c("post.bin"), "-o", c("answer.bin"), "-w",
                  "%{http_code} %{http_version} %{ssl_verify_result}",
                  "https://localhost:" + port + "/upload"});
    INFO("curl stderr: " << r.stderr);
    CHECK(r.returncode == 0);
    CHECK(r.stdout == "200 1.1 0");
    CHECK(request_line == "POST /upload HTTP/1.1");
    CHECK(alpn == "http/1.1");
    CHECK(got_body == body);
    CHECK(read_file(c("answer.bin")) == answer);
    CHECK(log.kinds.empty());
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "server against Python's ssl module: bytes both ways, "
                  "byte-exact, close_notify both ways (unwrap)") {
    NEED_CERTS(c);
    const std::string py = python3();
    if (py.empty()) COGENT_SKIP("python3 is not installed (Debian package python3)");
    const std::size_t n = 512 * KiB;
    write_file(c("client.py"), R"PY(import socket, ssl, sys
port, cafile, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def pattern(n, seed):
    return bytes(((i * 131 + (i >> 9) + seed) & 255) for i in range(n))
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["h2", "http/1.1"])
raw = socket.create_connection(("127.0.0.1", port), timeout=30)
s = ctx.wrap_socket(raw, server_hostname="localhost")
info = "%s %s %s" % (s.version(), s.selected_alpn_protocol(), s.getpeercert()["subject"])
s.sendall(pattern(n, 7))
got = bytearray()
while len(got) < n:
    part = s.recv(65536)
    if not part:
        break
    got += part
if bytes(got) != pattern(n, 8):
    print("MISMATCH", len(got))
    sys.exit(1)
plain = s.unwrap()  # close_notify, then the server's
plain.close()
print("OK", info)
)PY");
    std::string got, alpn, name;
    std::string end;
    HandshakeLog log;
    auto sctx = server_ctx(c);
    sctx.set_alpn_protocols({"http/1.1", "h2"});
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(
                            sctx,
                            [&](tls::Socket& s, const Address&) {
                                alpn = s.alpn_protocol();
                                name = s.server_name();
                                got = read_n(s, n);
                                s.sendall(simple_pattern(n, 8));
                                char b;
                                end = outcome_of([&] { return s.recv(&b, 1); });  // close_notify
                                s.shutdown();
                            },
                            log.options()));
    server.start();
    auto r = run({py, c("client.py"), std::to_string(server.address().port()), c("ca.pem"),
                  std::to_string(n)});
    INFO("python stderr: " << r.stderr);
    CHECK(r.returncode == 0);
    CHECK(r.stdout.rfind("OK TLSv1.3 http/1.1 ", 0) == 0);
    CHECK(contains(r.stdout, "'localhost'"));
    CHECK(got == simple_pattern(n, 7));
    CHECK(alpn == "http/1.1");
    CHECK(name == "localhost");
    CHECK(end == "eof");
    CHECK(log.kinds.empty());
    server.stop();
}

// =============================================================================================
// 3. cogent against cogent

// A server that greets each client with "hi" (the client reads it, and with it the TLS 1.3
// session tickets), then echoes.
struct GreetServer {
    HandshakeLog log;
    std::vector<bool> reused;  // session_reused() on the server's side, per connection
    StreamServer server;
    explicit GreetServer(const tls::Context& ctx)
        : server(Address("127.0.0.1", 0), tls::handler(
                                              ctx,
                                              [this](tls::Socket& s, const Address& peer) {
                                                  // The handshake timeout is not left on it.
                                                  CHECK(s.timeout().forever());
                                                  CHECK(s.peer_address() == peer);
                                                  reused.push_back(s.session_reused());
                                                  s.sendall("hi");
                                                  echo(s, peer);
                                              },
                                              log.options())) {
        server.start();
    }
    Address address() const { return server.address(); }
};

struct Visit {
    bool reused = false;
    tls::Session session;
    std::string version;
};

// A connection that reads the greeting; with `notify`, it sends close_notify (shutdown) before
// it closes. Returns session_reused() and the session.
Visit visit(const Address& a, const tls::Context& ctx, tls::SocketOptions o = {},
            bool notify = false) {
    tls::Socket s = connect_tls(a, ctx, "localhost", std::move(o));
    Visit v;
    CHECK(read_n(s, 2) == "hi");
    v.reused = s.session_reused();
    v.session = s.session();
    v.version = s.version();
    if (notify) s.shutdown();
    return v;
}

TEST_CASE_FIXTURE(LeakCheck,
                  "sessions: the context's cache resumes the second connection "
                  "(TLS 1.3 and 1.2)") {
    NEED_CERTS(c);
    for (auto max : {tls::Version::tls1_3, tls::Version::tls1_2}) {
        CAPTURE(int(max));
        GreetServer srv(server_ctx(c));
        auto ctx = client_ctx(c);
        ctx.set_max_version(max);
        Visit first = visit(srv.address(), ctx);
        CHECK_FALSE(first.reused);
        CHECK(first.version == (max == tls::Version::tls1_3 ? "TLSv1.3" : "TLSv1.2"));
        Visit second = visit(srv.address(), ctx);
        CHECK(second.reused);
        Visit third = visit(srv.address(), ctx);
        CHECK(third.reused);
        REQUIRE(srv.reused.size() == 3);
        CHECK(srv.reused == std::vector<bool>{false, true, true});
        // Another context has its own cache; clear_session_cache empties this one.
        CHECK_FALSE(visit(srv.address(), client_ctx(c)).reused);
        ctx.clear_session_cache();
        CHECK_FALSE(visit(srv.address(), ctx).reused);
        CHECK(visit(srv.address(), ctx).reused);
        CHECK(srv.log.kinds.empty());
        srv.server.stop();
    }
}

TEST_CASE_FIXTURE(LeakCheck, "sessions: an explicit Session, with the cache off") {
    NEED_CERTS(c);
    GreetServer srv(server_ctx(c));
    auto ctx = client_ctx(c);
    ctx.set_session_cache(false);
    Visit first = visit(srv.address(), ctx);
    CHECK_FALSE(first.reused);
    REQUIRE(first.session);
    CHECK(first.session.resumable());
    CHECK(first.session.native_handle() != nullptr);
    CHECK_FALSE(visit(srv.address(), ctx).reused);  // no cache: a full handshake

    tls::SocketOptions o;
    o.session = first.session;
    Visit third = visit(srv.address(), ctx, o);
    CHECK(third.reused);
    // TLS 1.3 tickets are single-use (RFC 8446, C.4): the resumed connection's own session
    // (a new ticket) is the one to offer next.
    CHECK_FALSE(first.session.resumable());
    REQUIRE(third.session.resumable());

    // set_session before the handshake; std::logic_error after it.
    tls::Socket s = tls_socket(srv.address(), ctx);
    s.set_session(third.session);
    s.handshake();
    CHECK(s.session_reused());
    CHECK(read_n(s, 2) == "hi");
    CHECK_THROWS_AS(s.set_session(third.session), std::logic_error);
    CHECK_FALSE(bool(tls::Session()));
    s.close();

    // Closed after close_notify: OpenSSL keeps the session resumable in any case (closed
    // without it, OpenSSL marks the session not resumable unless told otherwise, as CPython
    // does with SSL_set_shutdown before SSL_free; the cases above close that way).
    Visit polite = visit(srv.address(), ctx, {}, true);
    REQUIRE(polite.session);
    CHECK(polite.session.resumable());
    tls::SocketOptions o2;
    o2.session = polite.session;
    CHECK(visit(srv.address(), ctx, o2).reused);
    CHECK(srv.log.kinds.empty());
    srv.server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "sessions: a server with session tickets off never resumes") {
    NEED_CERTS(c);
    for (auto max : {tls::Version::tls1_3, tls::Version::tls1_2}) {
        CAPTURE(int(max));
        auto sctx = server_ctx(c);
        sctx.set_session_tickets(false);
        GreetServer srv(sctx);
        auto ctx = client_ctx(c);
        ctx.set_max_version(max);
        Visit first = visit(srv.address(), ctx);
        CHECK_FALSE(first.reused);
        tls::SocketOptions o;
        o.session = first.session;
        CHECK_FALSE(visit(srv.address(), ctx, o).reused);
        CHECK_FALSE(visit(srv.address(), ctx).reused);
        CHECK(srv.log.kinds.empty());
        srv.server.stop();
    }
}

TEST_CASE_FIXTURE(LeakCheck,
                  "ALPN: the server's first choice the client offers; none in "
                  "common leaves it unused; bad names") {
    NEED_CERTS(c);
    std::vector<std::string> server_seen;
    auto sctx = server_ctx(c);
    sctx.set_alpn_protocols({"h2", "http/1.1"});
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(sctx, [&](tls::Socket& s, const Address& peer) {
                            server_seen.push_back(s.alpn_protocol());
                            echo(s, peer);
                        }));
    server.start();
    auto ctx = client_ctx(c);
    ctx.set_alpn_protocols({"http/1.1", "h2"});
    {
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(s.alpn_protocol() == "h2");
        s.sendall("x");
        CHECK(read_n(s, 1) == "x");
    }
    auto other = client_ctx(c);
    other.set_alpn_protocols({"spdy/1", "imap"});
    {
        tls::Socket s = connect_tls(server.address(), other);
        CHECK(s.alpn_protocol() == "");
        s.sendall("y");
        CHECK(read_n(s, 1) == "y");  // the connection goes on
    }
    {
        tls::Socket s = connect_tls(server.address(), client_ctx(c));  // offers none
        CHECK(s.alpn_protocol() == "");
        s.sendall("z");
        CHECK(read_n(s, 1) == "z");
    }
    CHECK(eventually([&] { return server_seen.size() == 3; }));
    CHECK(joined(server_seen) == "h2||");
    CHECK_THROWS_AS(ctx.set_alpn_protocols({"h2", ""}), std::invalid_argument);
    CHECK_THROWS_AS(ctx.set_alpn_protocols({std::string(256, 'a')}), std::invalid_argument);
    ctx.set_alpn_protocols({std::string(255, 'a')});  // the longest allowed
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "SNI: the callback switches the certificate; server_name(); an "
                  "exception in it ends the handshake") {
    NEED_CERTS(c);
    auto other_ctx = server_ctx(c, "other");
    std::vector<std::string> asked, names;
    auto sctx = server_ctx(c);
    sctx.set_sni_callback([&](std::string_view name) -> std::optional<tls::Context> {
        asked.emplace_back(name);
        if (name == "other.test") return other_ctx;
        if (name == "boom.test") throw std::runtime_error("no such site");
        return std::nullopt;
    });
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0), tls::handler(
                                                     sctx,
                                                     [&](tls::Socket& s, const Address& peer) {
                                                         names.push_back(s.server_name());
                                                         echo(s, peer);
                                                     },
                                                     log.options()));
    server.start();
    auto ctx = client_ctx(c);
    {
        tls::Socket s = connect_tls(server.address(), ctx, "other.test");
        CHECK(s.peer_certificate().common_name() == "other.test");
        CHECK(joined(s.peer_certificate().dns_names()) == "other.test");
        s.sendall("a");
        CHECK(read_n(s, 1) == "a");
    }
    {
        tls::Socket s = connect_tls(server.address(), ctx, "localhost");
        CHECK(s.peer_certificate().common_name() == "localhost");
        s.sendall("b");
        CHECK(read_n(s, 1) == "b");
    }
    {
        // A numeric address is not sent as SNI: the default certificate, server_name() "".
        tls::Socket s = connect_tls(server.address(), ctx, "127.0.0.1");
        CHECK(s.peer_certificate().common_name() == "localhost");
        s.sendall("c");
        CHECK(read_n(s, 1) == "c");
    }
    CHECK(eventually([&] { return names.size() == 3; }));
    CHECK(joined(names) == "other.test|localhost|");
    CHECK(std::count(asked.begin(), asked.end(), "other.test") == 1);
    CHECK(std::count(asked.begin(), asked.end(), "localhost") == 1);

    // The callback throwing: an "unrecognized name" alert.
    {
        tls::Socket s = tls_socket(server.address(), ctx, "boom.test");
        auto e = thrown<tls::Error>([&] { s.handshake(); });
        REQUIRE(e);
        CHECK(contains(e->what(), "unrecognized name"));
        CHECK(contains(e->reason(), "unrecognized name"));
    }
    CHECK(eventually([&] { return log.kinds.size() == 1; }));
    CHECK(joined(log.kinds) == "Error");
    CHECK(echo_ok(server.address(), ctx));  // and it goes on serving
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "mutual TLS: Verify::required needs a client certificate; "
                  "Verify::optional checks one when given") {
    NEED_CERTS(c);
    for (auto mode : {tls::Verify::required, tls::Verify::optional}) {
        CAPTURE(int(mode));
        auto sctx = server_ctx(c);
        sctx.set_verify(mode);
        CHECK(sctx.verify() == mode);
        sctx.load_verify_locations(c("ca.pem"));
        std::vector<std::string> clients;
        HandshakeLog log;
        StreamServer server(Address("127.0.0.1", 0),
                            tls::handler(
                                sctx,
                                [&](tls::Socket& s, const Address& peer) {
                                    auto cert = s.peer_certificate();
                                    clients.push_back(cert ? cert.common_name() : "(none)");
                                    echo(s, peer);
                                },
                                log.options()));
        server.start();

        auto with_cert = client_ctx(c);
        with_cert.load_cert_chain(c("client.pem"), c("client.key"));
        CHECK(echo_ok(server.address(), with_cert, "with a certificate"));

        // A certificate from an unknown CA: refused in both modes.
        auto foreign = client_ctx(c);
        foreign.load_cert_chain(c("localhost2.pem"), c("localhost2.key"));
        {
            tls::Socket s = tls_socket(server.address(), foreign);
            // TLS 1.3: the client's handshake ends before the server has checked; the alert
            // arrives at the first read.
            std::string what;
            std::string how = outcome_of(
                [&] {
                    s.handshake();
                    char b;
                    return s.recv(&b, 1);
                },
                &what);
            CHECK(how == "Error");
            CHECK(contains(what, "unknown ca"));
        }

        tls::Socket s = tls_socket(server.address(), client_ctx(c));
        if (mode == tls::Verify::required) {
            std::string what;
            std::string how = outcome_of(
                [&] {
                    s.handshake();
                    char b;
                    return s.recv(&b, 1);
                },
                &what);
            CHECK(how == "Error");
            CHECK(contains(what, "certificate required"));
            CHECK(eventually([&] { return log.kinds.size() == 2; }));
            CHECK(joined(log.kinds) == "VerificationError|Error");
            CHECK(joined(clients) == "cogent client");
        } else {
            s.handshake();
            s.sendall("without");
            CHECK(read_n(s, 7) == "without");
            CHECK(eventually([&] { return clients.size() == 2; }));
            CHECK(joined(clients) == "cogent client|(none)");
            CHECK(joined(log.kinds) == "VerificationError");
        }
        s.close();
        CHECK(echo_ok(server.address(), with_cert));
        server.stop();
    }
}

TEST_CASE_FIXTURE(LeakCheck,
                  "versions: a TLS 1.3-only server refuses a TLS 1.2-only client; "
                  "1.2 is agreed when both allow it") {
    NEED_CERTS(c);
    auto sctx = server_ctx(c);
    sctx.set_min_version(tls::Version::tls1_3);
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0), tls::handler(sctx, echo, log.options()));
    server.start();
    auto old_client = client_ctx(c);
    old_client.set_max_version(tls::Version::tls1_2);
    {
        tls::Socket s = tls_socket(server.address(), old_client);
        auto e = thrown<tls::Error>([&] { s.handshake(); });
        REQUIRE(e);
        CHECK(contains(e->what(), "protocol version"));
        CHECK_FALSE(s.handshake_done());
    }
    CHECK(eventually([&] { return log.kinds.size() == 1; }));
    CHECK(joined(log.kinds) == "Error");
    {
        tls::Socket s = connect_tls(server.address(), client_ctx(c));
        CHECK(s.version() == "TLSv1.3");
    }
    server.stop();

    // A default server and a client capped at 1.2: TLS 1.2.
    StreamServer server2(Address("127.0.0.1", 0), tls::handler(server_ctx(c), echo));
    server2.start();
    tls::Socket s = connect_tls(server2.address(), old_client);
    CHECK(s.version() == "TLSv1.2");
    s.sendall("1.2");
    CHECK(read_n(s, 3) == "1.2");
    s.close();
    server2.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "ciphers: a chosen TLS 1.3 suite and TLS 1.2 list are used; "
                  "unknown names are an Error") {
    NEED_CERTS(c);
    auto sctx = server_ctx(c);
    sctx.set_ciphersuites("TLS_CHACHA20_POLY1305_SHA256");
    sctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305");
    StreamServer server(Address("127.0.0.1", 0), tls::handler(sctx, echo));
    server.start();
    {
        tls::Socket s = connect_tls(server.address(), client_ctx(c));
        CHECK(s.cipher() == "TLS_CHACHA20_POLY1305_SHA256");
    }
    {
        auto ctx = client_ctx(c);
        ctx.set_max_version(tls::Version::tls1_2);
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(s.cipher() == "ECDHE-ECDSA-CHACHA20-POLY1305");
    }
    CHECK_THROWS_AS(sctx.set_ciphers("NO-SUCH-CIPHER"), tls::Error);
    CHECK_THROWS_AS(sctx.set_ciphersuites("TLS_NO_SUCH_SUITE"), tls::Error);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "contexts: defaults, PEM in memory, an encrypted key, bad files "
                  "named, a key that does not match") {
    NEED_CERTS(c);
    auto client = tls::Context::client();
    CHECK(client.role() == tls::Context::Role::client);
    CHECK(client.verify() == tls::Verify::required);
    CHECK(client.check_hostname());
    CHECK(client.native_handle() != nullptr);
    auto server = tls::Context::server();
    CHECK(server.role() == tls::Context::Role::server);
    CHECK(server.verify() == tls::Verify::none);
    CHECK(tls::Context(tls::Context::Role::server).role() == tls::Context::Role::server);

    // Copies share one context.
    tls::Context copy = client;
    CHECK(copy.native_handle() == client.native_handle());
    copy.set_check_hostname(false);
    CHECK_FALSE(client.check_hostname());

    // PEM text in memory, for the server's chain and key and the client's CA.
    auto pem_server = tls::Context::server();
    pem_server.use_cert_chain_pem(read_file(c("localhost_chain.pem")),
                                  read_file(c("localhost.key")));
    auto pem_client = tls::Context(tls::Context::Role::client);
    pem_client.load_verify_pem(read_file(c("ca.pem")));
    // An encrypted key with its password.
    auto enc_server = tls::Context::server();
    enc_server.load_cert_chain(c("localhost.pem"), c("localhost_enc.key"), "cogent-secret");
    // The key in the certificate file (keyfile "").
    write_file(c("combined.pem"), read_file(c("localhost.pem")) + read_file(c("localhost.key")));
    auto combined_server = tls::Context::server();
    combined_server.load_cert_chain(c("combined.pem"));
    // The CA as a hashed directory.
    auto dir_client = tls::Context(tls::Context::Role::client);
    {
        auto r = run({"openssl", "x509", "-hash", "-noout", "-in", c("ca.pem")});
        REQUIRE(r.returncode == 0);
        std::string hash = r.stdout.substr(0, r.stdout.find('\n'));
        std::filesystem::create_directories(c("capath"));
        std::filesystem::copy_file(c("ca.pem"), c("capath/" + hash + ".0"),
                                   std::filesystem::copy_options::overwrite_existing);
        dir_client.load_verify_locations("", c("capath"));
    }

    for (auto* sctx : {&pem_server, &enc_server, &combined_server}) {
        StreamServer srv(Address("127.0.0.1", 0), tls::handler(*sctx, echo));
        srv.start();
        for (auto* cctx : {&pem_client, &dir_client}) {
            tls::Socket s = connect_tls(srv.address(), *cctx);
            if (sctx == &pem_server) CHECK(s.peer_chain().size() == 2);
            s.sendall("pem");
            CHECK(read_n(s, 3) == "pem");
        }
        srv.stop();
    }

    // Failures name the file and OpenSSL's reason.
    auto ctx = tls::Context::server();
    const std::string missing = c("no-such-cert.pem");
    auto e = thrown<tls::Error>([&] { ctx.load_cert_chain(missing, c("localhost.key")); });
    REQUIRE(e);
    CHECK(contains(e->what(), missing));
    e = thrown<tls::Error>([&] { ctx.load_cert_chain(c("localhost.pem"), c("no-such.key")); });
    REQUIRE(e);
    CHECK(contains(e->what(), c("no-such.key")));
    e = thrown<tls::Error>([&] { ctx.load_cert_chain(c("test.cnf"), c("localhost.key")); });
    REQUIRE(e);  // not PEM at all
    CHECK(contains(e->what(), c("test.cnf")));
    e = thrown<tls::Error>([&] { ctx.load_cert_chain(c("localhost.pem"), c("other.key")); });
    REQUIRE(e);  // a key that is not the certificate's
    CHECK(contains(e->what(), "key"));
    e = thrown<tls::Error>(
        [&] { ctx.load_cert_chain(c("localhost.pem"), c("localhost_enc.key"), "wrong"); });
    REQUIRE(e);
    CHECK(contains(e->what(), c("localhost_enc.key")));
    e = thrown<tls::Error>(
        [&] { ctx.load_cert_chain(c("localhost.pem"), c("localhost_enc.key")); });
    REQUIRE(e);  // no password: an Error, never a prompt
    e = thrown<tls::Error>([&] { ctx.load_verify_locations(c("no-such-ca.pem")); });
    REQUIRE(e);
    CHECK(contains(e->what(), c("no-such-ca.pem")));
    CHECK_THROWS_AS(ctx.use_cert_chain_pem("not pem", read_file(c("localhost.key"))), tls::Error);
    CHECK_THROWS_AS(
        ctx.use_cert_chain_pem(read_file(c("localhost.pem")), read_file(c("other.key"))),
        tls::Error);
    CHECK_THROWS_AS(ctx.load_verify_pem("not pem"), tls::Error);

    // handler() wants a server context and a handler.
    CHECK_THROWS_AS(tls::handler(client, echo), std::invalid_argument);
    CHECK_THROWS_AS(tls::handler(server, nullptr), std::invalid_argument);
}

TEST_CASE_FIXTURE(LeakCheck, "Certificate: the fields of the test certificates, PEM and DER") {
    NEED_CERTS(c);
    auto leaf = tls::Certificate::from_pem(read_file(c("localhost_chain.pem")));  // the first
    REQUIRE(leaf);
    CHECK(leaf.common_name() == "localhost");
    CHECK(leaf.subject() == "CN=localhost,O=cogent test");
    CHECK(leaf.issuer() == "CN=cogent test ca,O=cogent test");
    CHECK(joined(leaf.dns_names()) == "localhost");
    CHECK(joined(leaf.ip_addresses()) == "127.0.0.1");
    auto now = std::chrono::system_clock::now();
    CHECK(leaf.not_before() <= now);
    CHECK(leaf.not_after() > now + std::chrono::hours(24 * 29));
    CHECK(leaf.not_after() < now + std::chrono::hours(24 * 31));
    std::string der = leaf.der();
    REQUIRE(der.size() > 100);
    CHECK(der[0] == '\x30');  // a DER SEQUENCE
    auto again = tls::Certificate::from_pem(leaf.pem());
    CHECK(again.der() == der);
    CHECK(contains(leaf.pem(), "-----BEGIN CERTIFICATE-----"));

    auto expired = tls::Certificate::from_pem(read_file(c("expired.pem")));
    using namespace std::chrono;
    CHECK(expired.not_before() == system_clock::time_point(seconds(1577836800)));  // 2020-01-01
    CHECK(expired.not_after() == system_clock::time_point(seconds(1577923200)));   // 2020-01-02
    std::string serial = expired.serial();
    std::transform(serial.begin(), serial.end(), serial.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    CHECK(serial == "1000");

    auto client = tls::Certificate::from_pem(read_file(c("client.pem")));
    CHECK(client.common_name() == "cogent client");
    CHECK(client.dns_names().empty());
    CHECK(client.ip_addresses().empty());

    CHECK_FALSE(bool(tls::Certificate()));
    CHECK_THROWS_AS(tls::Certificate::from_pem("no certificate here"), tls::Error);
    CHECK_THROWS_AS(tls::Certificate::from_pem(read_file(c("localhost.key"))), tls::Error);
}

// =============================================================================================
// 4. Bad certificates and bad peers

TEST_CASE_FIXTURE(LeakCheck,
                  "verification: wrong host name, expired, unknown CA, self-signed, "
                  "no host name") {
    NEED_CERTS(c);
    struct Case {
        const char* what;
        const char* cert;
        const char* key;
        const char* host;
        const char* message;
    };
    const Case cases[] = {
        {"wrong host name", "localhost", "localhost", "wrong.example", "host name mismatch"},
        {"wrong IP address", "other", "other", "127.0.0.1", "mismatch"},
        {"expired", "expired", "localhost", "localhost", "certificate has expired"},
        {"unknown CA", "localhost2", "localhost2", "localhost",
         "unable to get local issuer certificate"},
        {"self-signed", "selfsigned", "selfsigned", "localhost", "self-signed certificate"},
    };
    for (const Case& k : cases) {
        CAPTURE(k.what);
        HandshakeLog log;
        StreamServer server(Address("127.0.0.1", 0),
                            tls::handler(server_ctx(c, k.cert, k.key), echo, log.options()));
        server.start();
        tls::Socket s = tls_socket(server.address(), client_ctx(c), k.host);
        auto e = thrown<tls::VerificationError>([&] { s.handshake(); });
        REQUIRE(e);
        CHECK(contains(e->verify_message(), k.message));
        CHECK(e->verify_code() != 0);
        CHECK(e->reason() == "certificate verify failed");
        if (std::string(k.what) == "wrong host name")
            CHECK(contains(std::string(e->what()) + " " + e->verify_message(), "wrong.example"));
        CHECK_FALSE(s.handshake_done());
        s.close();
        // The server hears of it (the client's alert).
        CHECK(eventually([&] { return log.kinds.size() == 1; }));
        CHECK(joined(log.kinds) == "Error");

        // Without name checks (or without verification) the same server is accepted.
        auto lax = client_ctx(c);
        lax.set_check_hostname(false);
        if (std::string(k.what).find("host name") == std::string::npos &&
            std::string(k.what).find("IP") == std::string::npos)
            lax.set_verify(tls::Verify::none);
        tls::Socket ok = connect_tls(server.address(), lax, k.host);
        ok.sendall("lax");
        CHECK(read_n(ok, 3) == "lax");
        ok.close();
        server.stop();
    }

    // No host name with check_hostname on: no connection (the header says the handshake fails
    // with an Error; refusing to make the socket, std::invalid_argument, is as good).
    StreamServer server(Address("127.0.0.1", 0), tls::handler(server_ctx(c), echo));
    server.start();
    std::string what;
    std::string how = outcome_of(
        [&] {
            tls::Socket s = tls_socket(server.address(), client_ctx(c), "");
            s.handshake();
        },
        &what);
    INFO(what);
    CHECK((how == "Error" || how == "invalid_argument"));
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "bad peers: a plain-text client is closed, reported, and the "
                  "server goes on") {
    NEED_CERTS(c);
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0), tls::handler(server_ctx(c), echo, log.options()));
    server.start();
    {
        Socket plain = tcp_connect(server.address());
        plain.set_timeout(10s);
        plain.sendall("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        auto [bytes, how] = plain_read_to_end(plain);
        CHECK((how == "eof" || how == "errno " + std::to_string(ECONNRESET)));
        CHECK(bytes.size() < 64);  // nothing but perhaps an alert
        CHECK(bytes.rfind("HTTP/", 0) != 0);
    }
    CHECK(eventually([&] { return log.kinds.size() == 1; }));
    CHECK(joined(log.kinds) == "Error");
    CHECK(contains(log.reasons.at(0), "http request"));
    CHECK(echo_ok(server.address(), client_ctx(c)));
    CHECK(log.kinds.size() == 1);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "bad peers: half a ClientHello then a close fails that handshake "
                  "at once; the server goes on") {
    NEED_CERTS(c);
    const std::string hello = client_hello();
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), echo, log.options(10s)));
    server.start();
    for (std::size_t cut : {std::size_t(3), hello.size() / 2}) {
        CAPTURE(cut);
        auto t0 = Clock::now();
        std::size_t before = log.kinds.size();
        {
            Socket plain = tcp_connect(server.address());
            plain.sendall(hello.substr(0, cut));
            plain.shutdown(SHUT_WR);
            auto [bytes, how] = plain_read_to_end(plain);
            CHECK((how == "eof" || how == "errno " + std::to_string(ECONNRESET)));
        }
        CHECK(eventually([&] { return log.kinds.size() == before + 1; }));
        CHECK(ms_since(t0) < 5000);  // well before the 10 s handshake timeout
        CHECK(log.kinds.back() != "SocketTimeout");
        CHECK(echo_ok(server.address(), client_ctx(c)));
    }
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "bad peers: 1,000 stalled handshakes (slowloris) do not delay real "
                  "clients and are closed after handshake_timeout") {
    NEED_CERTS(c);
    const int stallers = 1000;
    NofileRaised nofile(2 * stallers + 200);
    REQUIRE_MESSAGE(nofile.ok(), "RLIMIT_NOFILE allows only " << nofile.limit() << " fds");
    const std::string hello = client_hello();
    const auto handshake_timeout = 3s;
    HandshakeLog log;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), echo, log.options(handshake_timeout)));
    server.start();
    auto ctx = client_ctx(c);

    auto t0 = Clock::now();
    std::vector<Socket> stalled;
    stalled.reserve(stallers);
    for (int i = 0; i < stallers; ++i) {
        Socket s = tcp_connect(server.address());
        s.sendall(hello.substr(0, 11));  // the record header and the start of the message
        stalled.push_back(std::move(s));
    }
    const double connect_ms = ms_since(t0);
    MESSAGE("1,000 stallers connected in " << connect_ms << " ms");

    // Real clients, one after another, while every staller is still connected.
    std::vector<double> latencies;
    std::ostringstream each;
    for (int i = 0; i < 10; ++i) {
        auto t1 = Clock::now();
        CHECK(echo_ok(server.address(), ctx, "real client " + std::to_string(i)));
        latencies.push_back(ms_since(t1));
        each << " " << latencies.back();
    }
    const double served_ms = ms_since(t0);
    MESSAGE("10 real clients served in (ms):" << each.str());
    CHECK(*std::max_element(latencies.begin(), latencies.end()) < 1000);
    // Served while the stallers were connected: none has been closed yet (the first one's
    // handshake timeout ends 3 s after t0).
    REQUIRE_MESSAGE(served_ms < 2500, "too slow to tell (" << served_ms << " ms)");
    int open = 0;
    for (auto& s : stalled) {
        char b;
        try {
            s.recv(&b, 1, MSG_DONTWAIT);
        } catch (const std::system_error& e) {
            if (e.code().value() == EAGAIN) ++open;
        }
    }
    CHECK(open == stallers);
    CHECK(log.kinds.empty());

    // Then the timeout closes them all: the first (connected at t0) not before 3 s.
    int closed = 0;
    double first_closed_ms = 0;
    for (auto& s : stalled) {
        s.set_timeout(20s);
        auto [bytes, how] = plain_read_to_end(s);
        if (bytes.size() < 64 && (how == "eof" || how == "errno " + std::to_string(ECONNRESET)))
            ++closed;
        if (first_closed_ms == 0) first_closed_ms = ms_since(t0);
    }
    const double closed_ms = ms_since(t0);
    MESSAGE("the first staller was closed after " << first_closed_ms << " ms, the last after "
                                                  << closed_ms << " ms");
    CHECK(closed == stallers);
    CHECK(first_closed_ms >= 2900);
    CHECK(closed_ms < 3000 + connect_ms + 10000);
    CHECK(eventually([&] { return log.kinds.size() == std::size_t(stallers); }));
    CHECK(std::count(log.kinds.begin(), log.kinds.end(), "SocketTimeout") == stallers);
    stalled.clear();
    CHECK(echo_ok(server.address(), ctx));
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "bad peers: a close in the middle of a record is an Error at the "
                  "reader; the server goes on") {
    NEED_CERTS(c);
    std::vector<std::string> outcomes, whats;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            s.sendall("ready");
                            std::string what;
                            char buf[4096];
                            // "ok": the stream ended (recv 0).
                            outcomes.push_back(outcome_of(
                                [&] {
                                    while (s.recv(buf, sizeof buf) > 0) {
                                    }
                                },
                                &what));
                            whats.push_back(what);
                        }));
    server.start();
    auto ctx = client_ctx(c);
    {
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(read_n(s, 5) == "ready");
        // An application-data record header announcing 1000 bytes, then 10 of them, then FIN.
        std::string partial = std::string("\x17\x03\x03\x03\xe8", 5) + std::string(10, 'x');
        s.socket().sendall(partial);
        s.socket().shutdown(SHUT_WR);
        CHECK(eventually([&] { return outcomes.size() == 1; }));
    }
    CHECK(joined(outcomes) == "Error");
    INFO("the server's error: " << whats.at(0));
    {
        // The same with a ragged close between records: the end of the stream (recv 0).
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(read_n(s, 5) == "ready");
        s.sendall("whole record");
        s.socket().shutdown(SHUT_WR);
        CHECK(eventually([&] { return outcomes.size() == 2; }));
    }
    CHECK(outcomes.at(1) == "ok");
    {
        // And it goes on serving.
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(read_n(s, 5) == "ready");
        s.sendall("x");
        s.shutdown();
        CHECK(eventually([&] { return outcomes.size() == 3; }));
    }
    CHECK(outcomes.at(2) == "ok");
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "bad peers: a client's renegotiation (TLS 1.2) is refused; the "
                  "server goes on") {
    NEED_CERTS(c);
    std::vector<std::string> outcomes;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address& peer) {
                            outcomes.push_back(outcome_of([&] {
                                echo(s, peer);
                                return 1;
                            }));
                        }));
    server.start();
    auto ctx = client_ctx(c);
    ctx.set_max_version(tls::Version::tls1_2);
    {
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(s.version() == "TLSv1.2");
        s.sendall("before");
        CHECK(read_n(s, 6) == "before");
        SSL* ssl = s.native_handle();
        REQUIRE(ssl != nullptr);
        SSL_clear_options(ssl, SSL_OP_NO_RENEGOTIATION);  // our side asks for it anyway
        REQUIRE(SSL_renegotiate(ssl) == 1);
        std::string what;
        std::string how = outcome_of(
            [&] {
                s.sendall("after");
                return read_n(s, 5) == "after";
            },
            &what);
        INFO("the client saw: " << how << " " << what);
        CHECK((how == "Error" || how == "eof"));
    }
    CHECK(eventually([&] { return outcomes.size() == 1; }));
    CHECK(outcomes.at(0) != "ok");
    CHECK(echo_ok(server.address(), client_ctx(c)));
    server.stop();
}

// =============================================================================================
// 5. Socket semantics

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: the socket's timeout bounds the handshake (a peer "
                  "that accepts TCP and never answers)") {
    NEED_CERTS(c);
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(Address("127.0.0.1", 0));
    listener.listen(16);  // the kernel completes the TCP handshakes; nobody answers
    const Address a = listener.local_address();
    auto ctx = client_ctx(c);
    {
        tls::Socket s = tls_socket(a, ctx);
        s.set_timeout(300ms);
        auto t0 = Clock::now();
        CHECK_THROWS_AS(s.handshake(), SocketTimeout);
        double ms = ms_since(t0);
        CHECK(ms >= 250);
        CHECK(ms < 3000);
    }
    {
        tls::Socket s = tls_socket(a, ctx);  // socket timeout 20 s; the call's own bound wins
        auto t0 = Clock::now();
        CHECK_THROWS_AS(s.handshake(300ms), SocketTimeout);
        double ms = ms_since(t0);
        CHECK(ms >= 250);
        CHECK(ms < 3000);
    }
    {
        // recv makes the handshake: bounded by the socket's timeout too.
        tls::Socket s = tls_socket(a, ctx);
        s.set_timeout(300ms);
        char b;
        CHECK_THROWS_AS(s.recv(&b, 1), SocketTimeout);
    }
    {
        auto t0 = Clock::now();
        CHECK_THROWS_AS(tls::create_connection("127.0.0.1", a.port(), ctx, 300ms), SocketTimeout);
        double ms = ms_since(t0);
        CHECK(ms >= 250);
        CHECK(ms < 3000);
    }
    {
        // A Timeout scope bounds it too.
        tls::Socket s = tls_socket(a, ctx);
        auto t0 = Clock::now();
        bool fired = false;
        try {
            cogent::Timeout t(300ms);
            s.handshake();
        } catch (const cogent::Timeout&) {
            fired = true;
        }
        CHECK(fired);
        CHECK(ms_since(t0) < 3000);
    }
    {
        // close() from another greenlet while the handshake waits: EBADF.
        tls::Socket s = tls_socket(a, ctx);
        auto closer = cogent::spawn_later(100ms, [&] { s.close(); });
        auto e = thrown<std::system_error>([&] { s.handshake(); });
        REQUIRE(e);
        CHECK(e->code().value() == EBADF);
        closer.join();
        CHECK_FALSE(s.is_open());
    }
}

// A server whose handler sends what the test puts in `to_send` (when `go` is set), then echoes.
struct HeldServer {
    cogent::Event go;
    std::string to_send;
    StreamServer server;
    explicit HeldServer(const tls::Context& ctx)
        : server(Address("127.0.0.1", 0),
                 tls::handler(ctx, [this](tls::Socket& s, const Address& peer) {
                     go.wait(20s);
                     s.sendall(to_send);
                     echo(s, peer);
                 })) {
        server.start();
    }
};

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: a Timeout scope and the socket's timeout bound recv; "
                  "the connection stays usable") {
    NEED_CERTS(c);
    HeldServer srv(server_ctx(c));
    srv.to_send = "late";
    tls::Socket s = connect_tls(srv.server.address(), client_ctx(c));
    char buf[16];
    {
        auto t0 = Clock::now();
        bool fired = false;
        try {
            cogent::Timeout t(300ms);
            s.recv(buf, sizeof buf);
        } catch (const cogent::Timeout&) {
            fired = true;
        }
        CHECK(fired);
        CHECK(ms_since(t0) >= 250);
        CHECK(ms_since(t0) < 3000);
    }
    {
        s.set_timeout(200ms);
        CHECK(s.timeout().value() == cogent::Duration(200ms));
        auto t0 = Clock::now();
        CHECK_THROWS_AS(s.recv(buf, sizeof buf), SocketTimeout);
        CHECK(ms_since(t0) >= 150);
        CHECK(ms_since(t0) < 3000);
    }
    s.set_timeout(20s);
    srv.go.set();
    CHECK(read_n(s, 1) == "l");
    CHECK(s.pending() == 3);  // the rest of the record, decrypted
    CHECK(read_n(s, 3) == "ate");
    s.sendall("still fine");
    CHECK(read_n(s, 10) == "still fine");
    CHECK(s.pending() == 0);
    s.close();
    srv.server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: close() from another greenlet while one waits in "
                  "recv: EBADF; a second reader or writer: ConcurrentObjectUseError") {
    NEED_CERTS(c);
    HeldServer srv(server_ctx(c));
    srv.to_send = "x";
    {
        tls::Socket s = connect_tls(srv.server.address(), client_ctx(c));
        auto first = cogent::spawn([&] {
            char b;
            return s.recv(&b, 1);
        });
        cogent::sleep(50ms);  // `first` waits in recv
        char b;
        CHECK_THROWS_AS(s.recv(&b, 1), cogent::ConcurrentObjectUseError);
        srv.go.set();
        CHECK(first.get(10s) == 1);
    }
    {
        tls::Socket s = connect_tls(srv.server.address(), client_ctx(c));
        CHECK(read_n(s, 1) == "x");
        auto closer = cogent::spawn_later(100ms, [&] { s.close(); });
        auto t0 = Clock::now();
        auto e = thrown<std::system_error>([&] {
            char b;
            s.recv(&b, 1);
        });
        REQUIRE(e);
        CHECK(e->code().value() == EBADF);
        CHECK(ms_since(t0) < 3000);
        closer.join();
        CHECK_FALSE(s.is_open());
        CHECK(s.fileno() == -1);
        // Every later call: EBADF.
        auto again = thrown<std::system_error>([&] { s.sendall("x"); });
        REQUIRE(again);
        CHECK(again->code().value() == EBADF);
        s.close();  // idempotent
    }
    srv.server.stop();

    // A second writer while one waits (a peer that reads nothing: the buffers fill up).
    cogent::Event release;
    StreamServer mute(
        Address("127.0.0.1", 0),
        tls::handler(server_ctx(c), [&](tls::Socket&, const Address&) { release.wait(20s); }));
    mute.start();
    tls::Socket s = connect_tls(mute.address(), client_ctx(c));
    auto writer = cogent::spawn([&] {
        try {
            for (int i = 0; i < 64; ++i) s.sendall(stream_bytes(0), 1 * MiB);
            return std::string("all sent");
        } catch (const std::system_error& e) {
            return "errno " + std::to_string(e.code().value());
        }
    });
    cogent::sleep(200ms);  // `writer` waits in sendall
    REQUIRE_FALSE(writer.ready());
    CHECK_THROWS_AS(s.sendall("x"), cogent::ConcurrentObjectUseError);
    s.close();
    CHECK(writer.get(10s) == "errno " + std::to_string(EBADF));
    release.set();
    mute.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: full duplex, one greenlet reading while another "
                  "writes, 8 MiB each way on both sides at once") {
    NEED_CERTS(c);
    const std::size_t size = 8 * MiB;
    // Small kernel buffers (no autotuning): far less than 8 MiB fits in flight, so a side that
    // could not read while its writer waits would deadlock both.
    auto small_buffers = [](Socket& raw) {
        raw.set_option(SOL_SOCKET, SO_SNDBUF, 64 * 1024);
        raw.set_option(SOL_SOCKET, SO_RCVBUF, 64 * 1024);
    };
    std::string server_result = "not run";
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            small_buffers(s.socket());
                            auto writer = cogent::spawn([&] { send_stream(s, 11, size); });
                            server_result = recv_stream(s, 10, size);
                            writer.get();
                        }));
    server.start();
    Socket raw(AF_INET, SOCK_STREAM);
    small_buffers(raw);
    raw.set_timeout(20s);
    raw.connect(server.address());
    tls::SocketOptions o;
    o.server_hostname = "localhost";
    tls::Socket s(std::move(raw), client_ctx(c), o);
    auto t0 = Clock::now();
    auto writer = cogent::spawn([&] { send_stream(s, 10, size, 1 * MiB); });
    CHECK(recv_stream(s, 11, size) == "");
    writer.get();
    MESSAGE("8 MiB each way in " << ms_since(t0) << " ms");
    CHECK(eventually([&] { return server_result != "not run"; }));
    CHECK(server_result == "");
    s.close();
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: TLS 1.3 key updates the peer asks for: the reading "
                  "side must write (both directions)") {
    NEED_CERTS(c);
    std::string server_result = "not run";
    StreamServer server(
        Address("127.0.0.1", 0), tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
            // Echo, asking the client for a key update every 16th round.
            std::vector<char> buf(64 * KiB);
            try {
                for (int round = 0;; ++round) {
                    std::size_t n = s.recv(buf.data(), buf.size());
                    if (n == 0) break;
                    if (round % 16 == 0 &&
                        SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED) != 1)
                        throw std::runtime_error("SSL_key_update failed on the server");
                    s.sendall(buf.data(), n);
                }
                server_result = "";
            } catch (const std::exception& e) {
                server_result = e.what();
            }
        }));
    server.start();
    tls::Socket s = connect_tls(server.address(), client_ctx(c));
    REQUIRE(s.version() == "TLSv1.3");
    for (int round = 0; round < 100; ++round) {
        CAPTURE(round);
        if (round % 8 == 0)  // the server must answer with its own update while it reads
            REQUIRE(SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED) == 1);
        const std::size_t size = 16 * KiB + std::size_t(round) * 97;
        s.sendall(stream_bytes(unsigned(round)), size);
        REQUIRE(recv_stream(s, unsigned(round), size) == "");
    }
    s.shutdown();
    char b;
    CHECK(s.recv(&b, 1) == 0);
    CHECK(eventually([&] { return server_result != "not run"; }));
    CHECK(server_result == "");
    s.close();
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: shutdown() sends close_notify (the peer reads 0) and "
                  "keeps the socket open for reading") {
    NEED_CERTS(c);
    std::vector<std::string> seen;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            std::string got = read_all(s);  // until close_notify
                            seen.push_back(got);
                            s.sendall("after your shutdown: " + got);
                            if (got == "ragged") {
                                s.close();  // no close_notify
                            } else {
                                s.shutdown();
                                char b;
                                CHECK(s.recv(&b, 1) == 0);  // still at the end
                            }
                        }));
    server.start();
    auto ctx = client_ctx(c);
    {
        tls::Socket s = connect_tls(server.address(), ctx);
        s.sendall("hello");
        s.shutdown();
        s.shutdown();  // a no-op once sent
        CHECK_THROWS(s.sendall("more"));
        CHECK(read_all(s) == "after your shutdown: hello");  // then close_notify: 0
        CHECK(s.is_open());
    }
    {
        // A close without close_notify: 0 with suppress_ragged_eofs (the default), an Error
        // ("unexpected eof") without.
        tls::SocketOptions o;
        o.suppress_ragged_eofs = false;
        tls::Socket s = connect_tls(server.address(), ctx, "localhost", o);
        CHECK_FALSE(s.options().suppress_ragged_eofs);
        s.sendall("ragged");
        s.shutdown();
        const std::string answer = "after your shutdown: ragged";
        CHECK(read_n(s, answer.size()) == answer);
        char b;
        auto e = thrown<tls::Error>([&] { s.recv(&b, 1); });
        REQUIRE(e);
        CHECK(contains(e->what(), "unexpected eof"));
    }
    {
        tls::Socket s = connect_tls(server.address(), ctx);
        CHECK(s.options().suppress_ragged_eofs);
        s.sendall("ragged");
        s.shutdown();
        CHECK(read_all(s) == "after your shutdown: ragged");
    }
    CHECK(eventually([&] { return seen.size() == 3; }));
    CHECK(joined(seen) == "hello|ragged|ragged");
    server.stop();
}

// A plain socket: up to and including the first '\n' (at most 5 s); what came, with how it
// ended when it was not a whole line.
std::string plain_line(Socket& s, std::string out = {}) {
    s.set_timeout(5s);
    if (auto nl = out.find('\n'); nl != std::string::npos) return out.substr(0, nl + 1);
    char ch;
    try {
        while (out.empty() || out.back() != '\n') {
            if (s.recv(&ch, 1) == 0) return out + "(eof)";
            out += ch;
        }
    } catch (const std::exception& e) {
        return out + "(" + e.what() + ")";
    }
    return out;
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: unwrap() on both sides, then plain text over the same "
                  "connection, also when it follows close_notify at once") {
    NEED_CERTS(c);
    std::string server_plain;
    bool server_closed = false;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            CHECK(read_n(s, 6) == "secret");
                            s.sendall("SECRET");
                            // close_notify, and plain text right behind it (one run of this
                            // greenlet: the client reads them together).
                            s.shutdown();
                            s.socket().sendall("plain from the server\n");
                            // waits for the client's close_notify
                            auto [plain, rest] = s.unwrap();
                            server_closed = !s.is_open();
                            server_plain = plain_line(plain, rest);
                        }));
    server.start();
    tls::Socket s = connect_tls(server.address(), client_ctx(c));
    s.sendall("secret");
    CHECK(read_n(s, 6) == "SECRET");
    auto [plain, rest] = s.unwrap();
    CHECK_FALSE(s.is_open());
    REQUIRE(plain.is_open());
    // The bytes after the server's close_notify belong to the plain stream: those read with it
    // come back in `rest`, the others from the socket.
    CHECK(plain_line(plain, rest) == "plain from the server\n");
    plain.sendall("plain from the client\n");
    CHECK(eventually([&] { return !server_plain.empty(); }));
    CHECK(server_plain == "plain from the client\n");
    CHECK(server_closed);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: wrapping checks its socket; adopt(); recv and send "
                  "make the handshake; addresses") {
    NEED_CERTS(c);
    auto ctx = client_ctx(c);
    CHECK_THROWS_AS(tls::Socket(Socket(), ctx), std::invalid_argument);
    CHECK_THROWS_AS(tls::Socket(Socket(AF_INET, SOCK_DGRAM), ctx), std::invalid_argument);
    tls::Socket empty;
    CHECK_FALSE(empty.is_open());
    CHECK(empty.fileno() == -1);

    std::vector<int> server_nodelay;
    StreamServer server(
        Address("127.0.0.1", 0),
        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address& peer) {
            server_nodelay.push_back(s.socket().get_option(IPPROTO_TCP, TCP_NODELAY));
            echo(s, peer);
        }));
    server.start();
    {
        Socket raw = tcp_connect(server.address());
        int fd = raw.release();
        tls::SocketOptions o;
        o.server_hostname = "localhost";
        tls::Socket s = tls::Socket::adopt(fd, ctx, o);
        CHECK(s.fileno() == fd);
        CHECK_FALSE(s.handshake_done());
        s.sendall("first send handshakes");  // the handshake, then the data
        CHECK(s.handshake_done());
        CHECK(read_n(s, 21) == "first send handshakes");
        CHECK(s.peer_address() == server.address());
        CHECK(s.local_address().host() == "127.0.0.1");
        CHECK(s.options().server_hostname == "localhost");
        CHECK(s.options().nodelay);
        CHECK(s.socket().get_option(IPPROTO_TCP, TCP_NODELAY) != 0);  // the default
        // Moves.
        tls::Socket moved = std::move(s);
        CHECK(moved.is_open());
        std::size_t sent = moved.send("moved");  // some of it: one record or more
        CHECK(sent >= 1);
        CHECK(sent <= 5);
        moved.sendall(std::string_view("moved").substr(sent));
        CHECK(read_n(moved, 5) == "moved");
    }
    {
        tls::Socket s = tls_socket(server.address(), ctx);
        auto reader = cogent::spawn([&] { return read_n(s, 4); });  // recv handshakes
        cogent::sleep(50ms);
        s.sendall("four");
        CHECK(reader.get(10s) == "four");
    }
    {
        tls::SocketOptions o;
        o.nodelay = false;
        tls::Socket s = connect_tls(server.address(), ctx, "localhost", o);
        CHECK(s.socket().get_option(IPPROTO_TCP, TCP_NODELAY) == 0);
    }
    CHECK(eventually([&] { return server_nodelay.size() == 3; }));
    CHECK(std::count(server_nodelay.begin(), server_nodelay.end(), 0) == 0);  // on for servers
    server.stop();
}

// =============================================================================================
// 6. Load

TEST_CASE_FIXTURE(LeakCheck,
                  "load: 1,000 concurrent TLS connections, 1 MiB each way at once, "
                  "byte-exact (clients on a second thread)") {
    NEED_CERTS(c);
    const int n = load_connections();
    const std::size_t size = 1 * MiB;
    NofileRaised nofile(2 * n + 200);
    REQUIRE_MESSAGE(nofile.ok(), "RLIMIT_NOFILE allows only " << nofile.limit() << " fds");
    table();  // built before the clock starts

    // Server: on this thread. Each handler reads the client's index, waits until all n are
    // in, then sends its stream while reading the client's.
    int active = 0, server_ok = 0, server_done = 0;
    std::string server_error;
    std::atomic<int> server_done_shared{0};
    cogent::Event all_in;
    auto sctx = server_ctx(c);
    StreamServer server(
        Address("127.0.0.1", 0),
        tls::handler(
            sctx,
            [&](tls::Socket& s, const Address&) {
                try {
                    std::string idx = read_n(s, 4);
                    if (idx.size() != 4) throw std::runtime_error("no index from the client");
                    std::uint32_t k;
                    std::memcpy(&k, idx.data(), 4);
                    if (++active == n) all_in.set();
                    if (!all_in.wait(120s)) throw std::runtime_error("not all clients came");
                    auto writer = cogent::spawn([&] { send_stream(s, 2 * k + 1, size); });
                    std::string r = recv_stream(s, 2 * k, size);
                    writer.get();
                    if (r.empty())
                        ++server_ok;
                    else if (server_error.empty())
                        server_error = r;
                } catch (const std::exception& e) {
                    if (server_error.empty()) server_error = e.what();
                }
                ++server_done;
                ++server_done_shared;
            },
            tls::HandlerOptions{.handshake_timeout = 60s, .on_handshake_error = {}}));
    server.start();
    const Address addr = server.address();

    std::atomic<int> client_ok{0};
    std::string client_error;
    auto t0 = Clock::now();
    std::thread clients([&] {
        try {
            auto cctx = client_ctx(c);
            std::vector<cogent::Greenlet<std::string>> gs;
            for (int k = 0; k < n; ++k)
                gs.push_back(cogent::spawn([&, k]() -> std::string {
                    try {
                        Socket raw(AF_INET, SOCK_STREAM);
                        raw.set_timeout(120s);
                        raw.connect(addr);
                        tls::SocketOptions o;
                        o.server_hostname = "localhost";
                        tls::Socket s(std::move(raw), cctx, o);
                        s.handshake();
                        std::uint32_t idx = std::uint32_t(k);
                        s.sendall(reinterpret_cast<const char*>(&idx), 4);
                        auto writer = cogent::spawn([&] { send_stream(s, 2 * unsigned(k), size); });
                        std::string r = recv_stream(s, 2 * unsigned(k) + 1, size);
                        writer.get();
                        return r;
                    } catch (const std::exception& e) {
                        return std::string("client failed: ") + e.what();
                    }
                }));
            for (auto& g : gs) {
                const std::string& r = g.get();
                if (r.empty())
                    ++client_ok;
                else if (client_error.empty())
                    client_error = r;
            }
            // Let the server's handlers finish before stopping it.
            for (int i = 0; i < 30000 && server_done_shared.load() < n; ++i)
                std::this_thread::sleep_for(1ms);
        } catch (const std::exception& e) {
            client_error = e.what();
        }
        server.stop();
    });
    server.serve_forever();  // until the client thread stops it
    clients.join();
    const double ms = ms_since(t0);
    MESSAGE(n << " connections, 1 MiB each way, in " << ms << " ms");
    CHECK(client_error == "");
    CHECK(server_error == "");
    CHECK(client_ok == n);
    CHECK(server_ok == n);
    CHECK(server_done == n);
    CHECK(active == n);
    CHECK(ms < 60000);
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(LeakCheck,
                  "make_reader: lines, exact counts and the end of a TLS stream (makefile)") {
    NEED_CERTS(c);
    const std::string blob = simple_pattern(200 * KiB, 9);
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            // Lines split over records, a blob larger than the reader's buffer,
                            // a tail without a newline, then close_notify.
                            s.sendall("first line\nsec");
                            cogent::sleep(10ms);
                            s.sendall("ond line\n");
                            s.sendall(blob);
                            s.sendall("tail");
                            s.shutdown();
                        }));
    server.start();
    tls::Socket s = connect_tls(server.address(), client_ctx(c));
    auto reader = tls::make_reader(s, 4096);
    CHECK(reader.readline() == "first line\n");
    CHECK(reader.readline() == "second line\n");
    CHECK(reader.read_exactly(blob.size()) == blob);
    CHECK(reader.readline() == "tail");  // shorter at the end of the stream
    CHECK(reader.readline().empty());
    CHECK(reader.read_some().empty());
    CHECK_THROWS_AS(reader.read_exactly(1), std::runtime_error);
    CHECK_THROWS_AS(cogent::SocketReader(nullptr, nullptr), std::invalid_argument);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: a socket destroyed (or assigned over) while other greenlets "
                  "wait in it wakes them with EBADF") {
    NEED_CERTS(c);
    cogent::Event release;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            s.sendall("x");
                            release.wait(10s);  // sends nothing more: the readers stay parked
                        }));
    server.start();
    auto ctx = client_ctx(c);
    for (int assign = 0; assign < 2; ++assign) {
        auto owned = std::make_unique<tls::Socket>(connect_tls(server.address(), ctx));
        CHECK(read_n(*owned, 1) == "x");
        tls::Socket& ref = *owned;
        std::string outcome;
        auto reader = cogent::spawn([&] {
            outcome = outcome_of([&] {
                char b;
                return ref.recv(&b, 1);
            });
        });
        cogent::sleep(20ms);  // the reader parks
        CHECK(outcome.empty());
        if (assign)
            *owned = tls::Socket();  // closes what it held
        else
            owned.reset();
        reader.join(5s);
        CHECK(reader.ready());
        CHECK(outcome == "system_error " + std::to_string(EBADF));
    }
    release.set();
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "semantics: a sendall interrupted by a Timeout scope mid-record leaves the "
                  "socket refusing later sends with a clear Error") {
    NEED_CERTS(c);
    cogent::Event release;
    StreamServer server(Address("127.0.0.1", 0),
                        tls::handler(server_ctx(c), [&](tls::Socket& s, const Address&) {
                            s.sendall("x");
                            release.wait(10s);  // never reads: the client's sends fill up
                        }));
    server.start();
    tls::Socket s = connect_tls(server.address(), client_ctx(c));
    CHECK(read_n(s, 1) == "x");
    s.socket().set_option(SOL_SOCKET, SO_SNDBUF, 16 * 1024);
    const std::string big(8 * MiB, 'a');
    bool interrupted = false;
    try {
        cogent::Timeout t(200ms);
        s.sendall(big);
    } catch (const cogent::Timeout&) {
        interrupted = true;
    }
    REQUIRE(interrupted);
    std::string what;
    CHECK(outcome_of([&] { return s.send("more"); }, &what) == "Error");
    CHECK(contains(what, "gave up"));
    release.set();
    server.stop();
}
