// tls::Socket: OpenSSL over a cooperative socket.
//
// OpenSSL reads and writes through a BIO of ours (cogent_bio below) on the non-blocking fd: a
// recv/send that says EAGAIN becomes OpenSSL's WANT_READ / WANT_WRITE, and the operation parks
// its greenlet on the fd in that direction (the runtime's fd_wait, reached through
// services/shim_api.hpp as patch/ does) and calls OpenSSL again. The BIO sends with MSG_NOSIGNAL
// (no SIGPIPE, as Socket) and feeds the read path the same readiness hint a Socket uses: after a
// read that drained the kernel's buffer, the next recv parks at once when OpenSSL has nothing
// buffered, instead of a recv(2) that would say EAGAIN.
//
// One greenlet may read while another writes. OpenSSL sometimes needs the other direction (a
// TLS 1.2 write that must read a handshake message, a TLS 1.3 read that must answer a
// KeyUpdate), so both operations may want to wait for the same direction at once; fd_wait
// allows one waiter per direction and fd, so the second waits on a dup of the fd (made the
// first time it is needed), which the kernel reports ready at the same moment.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "cogent/event.hpp"
#include "cogent/greenlet.hpp"
#include "services/shim_api.hpp"
#include "tls/tls_internal.hpp"

namespace cogent::tls {

using detail::ContextImpl;
using detail::throw_ssl;

namespace {

// The BIO's state: the fd, what the last system call said (OpenSSL keeps errno only by
// accident), and our read-ahead buffer. OpenSSL itself reads without read-ahead (it asks for
// a record's 5-byte header, then its body): one recv(2) into this buffer serves those asks for
// every record that has arrived, and whatever follows the last record OpenSSL has taken (the
// plain bytes after a close_notify) stays here for unwrap() to hand over, instead of being lost
// in OpenSSL's own read-ahead buffer. The buffer is held only while it has bytes.
constexpr std::size_t kBioBuf = 17 * 1024;

// Free buffers kept per thread, so that a connection's read is not a malloc and a free. A
// socket destroyed after its thread's pool (a static one at exit) frees its buffer directly.
thread_local bool buf_pool_gone = false;
struct BufPool {
    std::vector<char*> free;
    ~BufPool() {
        for (char* b : free) delete[] b;
        free.clear();
        buf_pool_gone = true;
    }
};
thread_local BufPool buf_pool;

char* buf_get() {
    if (!buf_pool_gone && !buf_pool.free.empty()) {
        char* b = buf_pool.free.back();
        buf_pool.free.pop_back();
        return b;
    }
    return new char[kBioBuf];
}

void buf_put(char* b) noexcept {
    if (!buf_pool_gone && buf_pool.free.size() < 64) {
        try {
            buf_pool.free.push_back(b);
            return;
        } catch (...) {
        }
    }
    delete[] b;
}

struct BioState {
    int fd = -1;
    int err = 0;       // errno of the last failed recv/send (0: none)
    bool eof = false;  // a recv returned 0
    char* buf = nullptr;
    std::size_t begin = 0, end = 0;  // buf[begin, end): received, not yet given to OpenSSL

    std::size_t buffered() const noexcept { return end - begin; }
    void release() noexcept {
        if (buf) buf_put(buf);
        buf = nullptr;
        begin = end = 0;
    }
    ~BioState() { release(); }
};

int bio_read(BIO* b, char* out, std::size_t len, std::size_t* got) {
    auto* st = static_cast<BioState*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    *got = 0;
    if (st->begin == st->end) {
        if (!st->buf) st->buf = buf_get();
        for (;;) {
            const ssize_t r = ::recv(st->fd, st->buf, kBioBuf, 0);
            if (r > 0) {
                // A short read emptied the kernel's buffer: the next read may park at once.
                if (std::size_t(r) < kBioBuf) cogent::detail::shim_fd_drained(st->fd);
                st->begin = 0;
                st->end = std::size_t(r);
                break;
            }
            st->release();
            if (r == 0) {
                st->eof = true;
                return 0;
            }
            if (errno == EINTR) {
                st->buf = buf_get();
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                cogent::detail::shim_fd_drained(st->fd);
                BIO_set_retry_read(b);
            } else {
                st->err = errno;
            }
            return 0;
        }
    }
    const std::size_t n = std::min(len, st->end - st->begin);
    std::memcpy(out, st->buf + st->begin, n);
    st->begin += n;
    if (st->begin == st->end) st->release();
    *got = n;
    return 1;
}

int bio_write(BIO* b, const char* buf, std::size_t len, std::size_t* wrote) {
    auto* st = static_cast<BioState*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    for (;;) {
        const ssize_t r = ::send(st->fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0) {
            *wrote = std::size_t(r);
            return 1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        else
            st->err = errno;
        *wrote = 0;
        return 0;
    }
}

long bio_ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
        case BIO_CTRL_FLUSH:
            return 1;
        case BIO_CTRL_EOF:
            return static_cast<BioState*>(BIO_get_data(b))->eof ? 1 : 0;
        default:
            return 0;
    }
}

int bio_create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD* bio_method() {
    static BIO_METHOD* m = [] {
        BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cogent socket");
        if (!bm) throw std::bad_alloc();
        BIO_meth_set_read_ex(bm, bio_read);
        BIO_meth_set_write_ex(bm, bio_write);
        BIO_meth_set_ctrl(bm, bio_ctrl);
        BIO_meth_set_create(bm, bio_create);
        return bm;
    }();
    return m;
}

bool is_numeric_host(const std::string& h) {
    unsigned char buf[16];
    return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

[[noreturn]] void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

}  // namespace

struct Socket::Impl {
    cogent::Socket sock;
    std::shared_ptr<ContextImpl> ctx;
    std::shared_ptr<ContextImpl> sni_ctx;  // the context an SNI callback switched to
    SSL* ssl = nullptr;
    BioState bio;
    SocketOptions opts;
    std::string cache_key;  // clients with a session cache: "server name|peer address"
    bool hs_done = false;
    bool handshaking = false;
    bool reading = false, writing = false;
    bool parked[2] = {false, false};  // [0] read, [1] write: an operation waits on fd
    bool write_broken = false;        // a send gave up in the middle of a record
    int aux_fd = -1;                  // dup of the fd, for a second waiter in one direction
    std::unique_ptr<Event> hs_event;  // set when a handshake another greenlet waits for ends

    ~Impl() { close(); }

    void close() noexcept {
        if (aux_fd >= 0) {
            cogent::close(aux_fd);
            aux_fd = -1;
        }
        sock.close();
        if (ssl) {
            // A close without close_notify would mark the session not resumable (OpenSSL
            // treats it as a truncation); closing is not an attack on the session, so say it
            // was sent (as CPython does), and the session stays resumable.
            if (hs_done) SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
            SSL_free(ssl);  // frees the BIO
            ssl = nullptr;
        }
        if (hs_event) hs_event->set();
    }

    std::string peer() const {
        try {
            return sock.peer_address().to_string();
        } catch (...) {
            return "(unconnected)";
        }
    }

    std::string describe(const char* op) const {
        std::string s = std::string("tls::Socket::") + op + " (" + peer();
        if (!opts.server_hostname.empty()) s += ", " + opts.server_hostname;
        return s + ")";
    }

    SSL* need(const char* op) const {
        if (!ssl || !sock.is_open()) throw_errno(EBADF, describe(op) + ": socket is closed");
        return ssl;
    }

    // Park for `dir` (READ or WRITE) at most `left`. Returns false when the time ran out.
    bool park(int dir, TimeoutArg left, const char* what) {
        const int i = dir == READ ? 0 : 1;
        const int fd = sock.fileno();
        if (fd < 0) throw_errno(EBADF, std::string(what) + ": socket is closed");
        if (parked[i]) {  // the other operation waits for this direction: use the dup
            if (aux_fd < 0) {
                aux_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
                if (aux_fd < 0) throw_errno(errno, std::string(what) + ": dup");
            }
            return cogent::detail::shim_fd_wait(aux_fd, dir, left, false, what, false) != 0;
        }
        parked[i] = true;
        struct Unpark {
            bool& flag;
            ~Unpark() { flag = false; }
        } unpark{parked[i]};
        return cogent::detail::shim_fd_wait(fd, dir, left, dir == READ, what, true) != 0;
    }

    enum class Result { done, eof, ragged_eof };

    // Call op() (an SSL_* call: > 0 done) until it is done, parking on WANT_READ/WANT_WRITE.
    // EOF results are returned; everything else throws.
    template <class Op>
    Result drive(Op&& op, cogent::detail::IoDeadline& dl, const char* opname, bool handshake) {
        for (;;) {
            ERR_clear_error();
            bio.err = 0;
            const int r = op();
            if (r > 0) return Result::done;
            const int e = SSL_get_error(ssl, r);
            int dir = 0;
            switch (e) {
                case SSL_ERROR_WANT_READ:
                    dir = READ;
                    break;
                case SSL_ERROR_WANT_WRITE:
                    dir = WRITE;
                    break;
                case SSL_ERROR_ZERO_RETURN:
                    return Result::eof;
                case SSL_ERROR_SYSCALL:
                    if (ERR_peek_error() == 0) {
                        if (bio.err) {
                            const int err = bio.err;
                            ERR_clear_error();
                            throw_errno(err, describe(opname));
                        }
                        return Result::ragged_eof;
                    }
                    fail(opname, handshake);
                case SSL_ERROR_SSL: {
                    const unsigned long code = ERR_peek_error();
                    if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING &&
                        !SSL_has_pending(ssl)) {
                        ERR_clear_error();
                        return Result::ragged_eof;
                    }
                    if (bio.err && code == 0) throw_errno(bio.err, describe(opname));
                    fail(opname, handshake);
                }
                default:
                    fail(opname, handshake);
            }
            if (dl.zero()) throw_errno(EAGAIN, describe(opname) + ": would block");
            if (!park(dir, dl.left(), "tls::Socket")) {
                throw SocketTimeout(describe(opname) + ": timed out");
            }
            if (!ssl) throw_errno(EBADF, describe(opname) + ": socket is closed");
        }
    }

    [[noreturn]] void fail(const char* opname, bool handshake) {
        const long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (handshake && v != X509_V_OK) {
            ERR_clear_error();
            std::string msg;
            if (v == X509_V_ERR_HOSTNAME_MISMATCH)
                msg = "host name mismatch (the certificate is not valid for '" +
                      opts.server_hostname + "')";
            else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH)
                msg = "IP address mismatch (the certificate is not valid for " +
                      opts.server_hostname + ")";
            else
                msg = X509_verify_cert_error_string(v);
            throw VerificationError(describe(opname) + ": certificate verify failed: " + msg, v,
                                    msg);
        }
        unsigned long code = 0;
        std::string reason = detail::take_ssl_reason(&code);
        if (reason.empty()) reason = "unknown OpenSSL error";
        throw Error(describe(opname) + ": " + reason, reason, code);
    }

    void do_handshake(TimeoutArg timeout) {
        need("handshake");
        if (hs_done) return;
        if (handshaking) {  // another greenlet makes it: wait for the outcome
            cogent::detail::IoDeadline dl(timeout);
            if (!hs_event) hs_event = std::make_unique<Event>();
            while (handshaking) {
                if (dl.zero() && !hs_event->wait(Duration::zero()))
                    throw_errno(EAGAIN, describe("handshake") + ": would block");
                if (!hs_event->wait(dl.left()))
                    throw SocketTimeout(describe("handshake") + ": timed out");
            }
            if (!hs_done)
                throw Error(describe("handshake") + ": the handshake failed", "handshake failed");
            return;
        }
        handshaking = true;
        struct Done {
            Impl& s;
            ~Done() {
                s.handshaking = false;
                if (s.hs_event) s.hs_event->set();  // never cleared: one handshake per socket
            }
        } done{*this};
        cogent::detail::IoDeadline dl(timeout);
        const Result r = drive([&] { return SSL_do_handshake(ssl); }, dl, "handshake", true);
        if (r != Result::done)
            throw Error(
                describe("handshake") + ": the peer closed the connection during the handshake",
                "unexpected eof while reading");
        hs_done = true;
    }

    void ensure_handshake() {
        if (!hs_done) do_handshake(sock.timeout());
    }
};

// --- callbacks (set on the contexts in context.cpp) ---

namespace detail {

int sni_callback(SSL* ssl, int* alert, void* arg) {
    auto* impl = static_cast<ContextImpl*>(arg);
    if (!impl->sni) return SSL_TLSEXT_ERR_OK;
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK;
    auto* s = static_cast<Socket::Impl*>(SSL_get_app_data(ssl));
    try {
        std::optional<Context> chosen = impl->sni(name);
        if (chosen) {
            if (chosen->role() != Context::Role::server) throw std::invalid_argument("client");
            SSL_set_SSL_CTX(ssl, chosen->native_handle());
            if (s) s->sni_ctx = chosen->impl();
        }
    } catch (...) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

int new_session_callback(SSL* ssl, SSL_SESSION* sess) {
    auto* s = static_cast<Socket::Impl*>(SSL_get_app_data(ssl));
    if (!s || s->cache_key.empty() || !s->ctx->session_cache) return 0;
    Session session(sess);  // a reference of its own
    std::lock_guard<std::mutex> g(s->ctx->mu);
    auto& cache = s->ctx->sessions;
    if (cache.size() >= ContextImpl::kMaxSessions && !cache.count(s->cache_key)) cache.clear();
    cache[s->cache_key] = std::move(session);
    return 0;  // OpenSSL keeps its reference
}

}  // namespace detail

// --- Socket ---

Socket::Socket() noexcept = default;
Socket::Socket(Socket&& o) noexcept = default;

Socket& Socket::operator=(Socket&& o) noexcept {
    if (this != &o) {
        if (p_) p_->close();
        p_ = std::move(o.p_);
    }
    return *this;
}

// The waiting calls (handshake, recv, send, sendall, shutdown, unwrap) hold a reference of their
// own to the state: a socket closed or destroyed by another greenlet while they wait wakes them
// with EBADF, and they unwind through state that is still there.
Socket::~Socket() {
    if (p_) p_->close();
}

Socket::Socket(cogent::Socket sock, const Context& ctx, SocketOptions options)
    : p_(std::make_shared<Impl>()) {
    auto& s = *p_;
    if (!sock.is_open()) throw std::invalid_argument("tls::Socket: the socket is not open");
    if (sock.type() != SOCK_STREAM)
        throw std::invalid_argument("tls::Socket: TLS needs a stream (SOCK_STREAM) socket");
    s.ctx = ctx.impl();
    s.opts = std::move(options);
    if (s.opts.nodelay && (sock.family() == AF_INET || sock.family() == AF_INET6)) {
        const int one = 1;
        ::setsockopt(sock.fileno(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // best effort
    }
    auto& host = s.opts.server_hostname;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const bool client = s.ctx->role == Context::Role::client;
    if (client && s.ctx->check_hostname && host.empty())
        throw std::invalid_argument(
            "tls::Socket: the context checks host names and no server_hostname was given "
            "(SocketOptions::server_hostname, or Context::set_check_hostname(false))");
    ERR_clear_error();
    s.ssl = SSL_new(s.ctx->ctx);
    if (!s.ssl) throw_ssl("tls::Socket: SSL_new");
    SSL_set_app_data(s.ssl, &s);
    BIO* b = BIO_new(bio_method());
    if (!b) throw_ssl("tls::Socket: BIO_new");
    s.bio.fd = sock.fileno();
    BIO_set_data(b, &s.bio);
    SSL_set_bio(s.ssl, b, b);
    s.sock = std::move(sock);
    if (client) {
        SSL_set_connect_state(s.ssl);
        if (!host.empty()) {
            const bool numeric = is_numeric_host(host);
            if (!numeric && SSL_set_tlsext_host_name(s.ssl, host.c_str()) != 1)
                throw_ssl("tls::Socket: server name '" + host + "'");
            if (s.ctx->check_hostname) {
                X509_VERIFY_PARAM* param = SSL_get0_param(s.ssl);
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                const int ok = numeric ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                                       : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
                if (ok != 1) throw_ssl("tls::Socket: host name '" + host + "'");
            }
        }
        if (s.opts.session) {
            SSL_set_session(s.ssl, s.opts.session.native_handle());
        } else if (s.ctx->session_cache) {
            s.cache_key = host + "|" + s.peer();
            Session cached;
            {
                std::lock_guard<std::mutex> g(s.ctx->mu);
                auto it = s.ctx->sessions.find(s.cache_key);
                if (it != s.ctx->sessions.end()) cached = it->second;
            }
            if (cached && cached.resumable()) SSL_set_session(s.ssl, cached.native_handle());
        }
    } else {
        SSL_set_accept_state(s.ssl);
    }
}

Socket Socket::adopt(int fd, const Context& ctx, SocketOptions options) {
    return Socket(cogent::Socket::adopt(fd), ctx, std::move(options));
}

namespace {
Socket::Impl& need_impl(const std::shared_ptr<Socket::Impl>& p, const char* op) {
    if (!p) throw_errno(EBADF, std::string("tls::Socket::") + op + ": invalid (moved-from) socket");
    return *p;
}

// For the calls that may wait: a reference that keeps the state alive until they return.
std::shared_ptr<Socket::Impl> hold(const std::shared_ptr<Socket::Impl>& p, const char* op) {
    need_impl(p, op);
    return p;
}
}  // namespace

void Socket::handshake() {
    const auto keep = hold(p_, "handshake");
    auto& s = *keep;
    s.do_handshake(s.sock.timeout());
}

void Socket::handshake(TimeoutArg timeout) {
    const auto keep = hold(p_, "handshake");
    keep->do_handshake(timeout);
}

bool Socket::handshake_done() const noexcept { return p_ && p_->hs_done; }

std::size_t Socket::recv(void* buf, std::size_t n) {
    const auto keep = hold(p_, "recv");
    auto& s = *keep;
    s.need("recv");
    if (s.reading)
        throw ConcurrentObjectUseError("tls::Socket::recv: another greenlet is reading " +
                                       s.peer());
    s.reading = true;
    struct Unread {
        bool& f;
        ~Unread() { f = false; }
    } unread{s.reading};
    s.ensure_handshake();
    if (n == 0) return 0;
    const int want = n > std::size_t(INT32_MAX) ? INT32_MAX : int(n);
    cogent::detail::IoDeadline dl(s.sock.timeout());
    // Nothing buffered in OpenSSL and the kernel drained since the last read: park first.
    if (!dl.zero() && s.bio.begin == s.bio.end && !SSL_has_pending(s.ssl) &&
        !cogent::detail::shim_fd_may_read(s.sock.fileno())) {
        if (!s.park(READ, dl.left(), "tls::Socket"))
            throw SocketTimeout(s.describe("recv") + ": timed out");
        s.need("recv");
    }
    std::size_t got = 0;
    const auto r = s.drive([&] { return SSL_read_ex(s.ssl, buf, std::size_t(want), &got); }, dl,
                           "recv", false);
    if (r == Impl::Result::done) return got;
    if (r == Impl::Result::ragged_eof && !s.opts.suppress_ragged_eofs)
        throw Error(s.describe("recv") + ": unexpected eof while reading (no close_notify)",
                    "unexpected eof while reading");
    return 0;
}

std::string Socket::recv(std::size_t max) {
    std::string out(max, '\0');
    out.resize(recv(out.data(), max));
    return out;
}

std::size_t Socket::pending() const noexcept {
    return p_ && p_->ssl ? std::size_t(SSL_pending(p_->ssl)) : 0;
}

namespace {

// One send (partial writes on: at least one record), under dl.
std::size_t send_some(Socket::Impl& s, const void* buf, std::size_t n,
                      cogent::detail::IoDeadline& dl, const char* op) {
    std::size_t wrote = 0;
    try {
        const auto r = s.drive([&] { return SSL_write_ex(s.ssl, buf, n, &wrote); }, dl, op, false);
        if (r != Socket::Impl::Result::done)
            throw_errno(EPIPE, s.describe(op) + ": the peer closed the connection");
    } catch (const std::system_error& e) {
        // A send given up while parked (its timeout; below: a Timeout scope, a kill) leaves
        // part of a record in OpenSSL, which must be sent before any other: later sends are
        // refused. EAGAIN (a zero timeout) is not giving up: the caller sends the same again.
        if (e.code().value() != EAGAIN) s.write_broken = true;
        throw;
    } catch (...) {
        s.write_broken = true;
        throw;
    }
    return wrote;
}

template <class F>
auto as_writer(Socket::Impl& s, const char* op, F&& f) {
    s.need(op);
    if (s.writing)
        throw ConcurrentObjectUseError(std::string("tls::Socket::") + op +
                                       ": another greenlet is writing " + s.peer());
    if (s.write_broken)
        throw Error(s.describe(op) +
                        ": an earlier send gave up (timed out or interrupted) in the middle of a "
                        "TLS record; the "
                        "connection cannot be written any more",
                    "bad write retry");
    s.writing = true;
    struct Unwrite {
        bool& f;
        ~Unwrite() { f = false; }
    } unwrite{s.writing};
    s.ensure_handshake();
    return f();
}

}  // namespace

std::size_t Socket::send(const void* buf, std::size_t n) {
    const auto keep = hold(p_, "send");
    auto& s = *keep;
    return as_writer(s, "send", [&]() -> std::size_t {
        if (n == 0) return 0;
        cogent::detail::IoDeadline dl(s.sock.timeout());
        return send_some(s, buf, n, dl, "send");
    });
}

void Socket::sendall(const void* buf, std::size_t n) {
    const auto keep = hold(p_, "sendall");
    auto& s = *keep;
    as_writer(s, "sendall", [&] {
        cogent::detail::IoDeadline dl(s.sock.timeout());
        const char* p = static_cast<const char*>(buf);
        while (n > 0) {
            const std::size_t w = send_some(s, p, n, dl, "sendall");
            p += w;
            n -= w;
            if (s.ssl == nullptr) throw_errno(EBADF, s.describe("sendall") + ": socket is closed");
        }
        return 0;
    });
}

void Socket::shutdown() {
    const auto keep = hold(p_, "shutdown");
    auto& s = *keep;
    s.need("shutdown");
    if (!s.hs_done || (SSL_get_shutdown(s.ssl) & SSL_SENT_SHUTDOWN)) return;
    as_writer(s, "shutdown", [&] {
        cogent::detail::IoDeadline dl(s.sock.timeout());
        // SSL_shutdown: 0 = close_notify sent (the peer's not yet seen), 1 = both; < 0 = wait.
        s.drive(
            [&] {
                const int r = SSL_shutdown(s.ssl);
                return r >= 0 ? 1 : r;
            },
            dl, "shutdown", false);
        return 0;
    });
}

Unwrapped Socket::unwrap() {
    const auto keep = hold(p_, "unwrap");
    auto& s = *keep;
    s.need("unwrap");
    if (s.hs_done) {
        shutdown();
        cogent::detail::IoDeadline dl(s.sock.timeout());
        // Read (and drop) until the peer's close_notify.
        char scratch[4096];
        for (;;) {
            std::size_t got = 0;
            const auto r =
                s.drive([&] { return SSL_read_ex(s.ssl, scratch, sizeof scratch, &got); }, dl,
                        "unwrap", false);
            if (r != Impl::Result::done) break;
        }
    }
    Unwrapped out;
    out.buffered.assign(s.bio.buf ? s.bio.buf + s.bio.begin : "", s.bio.buffered());
    s.bio.release();
    if (s.aux_fd >= 0) {
        cogent::close(s.aux_fd);
        s.aux_fd = -1;
    }
    SSL_free(s.ssl);
    s.ssl = nullptr;
    out.socket = std::move(s.sock);
    s.close();
    return out;
}

void Socket::close() noexcept {
    if (p_) p_->close();
}

void Socket::set_timeout(TimeoutArg t) noexcept {
    if (p_) p_->sock.set_timeout(t);
}

TimeoutArg Socket::timeout() const noexcept { return p_ ? p_->sock.timeout() : TimeoutArg(); }
int Socket::fileno() const noexcept { return p_ ? p_->sock.fileno() : -1; }
bool Socket::is_open() const noexcept { return p_ && p_->ssl && p_->sock.is_open(); }

cogent::Socket& Socket::socket() noexcept {
    if (!p_) p_ = std::make_shared<Impl>();
    return p_->sock;
}

Address Socket::peer_address() const { return need_impl(p_, "peer_address").sock.peer_address(); }
Address Socket::local_address() const {
    return need_impl(p_, "local_address").sock.local_address();
}

Certificate Socket::peer_certificate() const {
    SSL* ssl = need_impl(p_, "peer_certificate").need("peer_certificate");
    X509* x = SSL_get1_peer_certificate(ssl);
    Certificate c(x);
    X509_free(x);
    return c;
}

std::vector<Certificate> Socket::peer_chain() const {
    auto& s = need_impl(p_, "peer_chain");
    SSL* ssl = s.need("peer_chain");
    std::vector<Certificate> out;
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    if (s.ctx->role == Context::Role::server) {  // the server's view leaves the leaf out
        Certificate leaf = peer_certificate();
        if (leaf) out.push_back(leaf);
    }
    if (chain)
        for (int i = 0; i < sk_X509_num(chain); ++i) out.emplace_back(sk_X509_value(chain, i));
    return out;
}

std::string Socket::alpn_protocol() const {
    SSL* ssl = need_impl(p_, "alpn_protocol").need("alpn_protocol");
    const unsigned char* data = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &data, &len);
    return data ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

std::string Socket::version() const {
    return SSL_get_version(need_impl(p_, "version").need("version"));
}

std::string Socket::cipher() const {
    const SSL_CIPHER* c = SSL_get_current_cipher(need_impl(p_, "cipher").need("cipher"));
    return c ? SSL_CIPHER_get_name(c) : "";
}

std::string Socket::server_name() const {
    const char* n = SSL_get_servername(need_impl(p_, "server_name").need("server_name"),
                                       TLSEXT_NAMETYPE_host_name);
    return n ? n : "";
}

bool Socket::session_reused() const {
    return SSL_session_reused(need_impl(p_, "session_reused").need("session_reused")) == 1;
}

Session Socket::session() const {
    return Session(SSL_get0_session(need_impl(p_, "session").need("session")));
}

void Socket::set_session(const Session& session) {
    auto& s = need_impl(p_, "set_session");
    SSL* ssl = s.need("set_session");
    if (s.hs_done || s.handshaking)
        throw std::logic_error("tls::Socket::set_session: the handshake was already made");
    if (s.ctx->role != Context::Role::client)
        throw std::logic_error("tls::Socket::set_session: a client's call");
    s.opts.session = session;
    if (session && SSL_set_session(ssl, session.native_handle()) != 1)
        throw_ssl("tls::Socket::set_session");
}

const SocketOptions& Socket::options() const noexcept {
    static const SocketOptions none;
    return p_ ? p_->opts : none;
}

ssl_st* Socket::native_handle() const noexcept { return p_ ? p_->ssl : nullptr; }

}  // namespace cogent::tls
