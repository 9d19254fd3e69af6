// Cooperative TLS over OpenSSL 3 (gevent.ssl, Python's ssl module): a Context holds the
// settings and certificates, a tls::Socket runs TLS over a connected cogent::Socket and parks
// only its greenlet while the peer is slow, create_connection() connects and checks the name,
// and tls::handler() turns a StreamServer into a TLS server.
//
// An optional part of cogent: the library libcogent_tls (pkg-config cogent-tls, meson
// dependency `cogent_tls_dep`), built when OpenSSL 3 (the Debian package libssl-dev) is found.
//
//     // client
//     auto ctx = cogent::tls::Context::client();                 // system CAs, names checked
//     cogent::tls::Socket s = cogent::create_connection("example.org", 443, ctx);
//     s.sendall("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n");
//
//     // server: the handshake runs in each connection's greenlet, bounded by its own timeout
//     auto sctx = cogent::tls::Context::server();
//     sctx.load_cert_chain("cert.pem", "key.pem");
//     cogent::StreamServer server(addr, cogent::tls::handler(sctx,
//         [](cogent::tls::Socket& s, const cogent::Address& peer) { ... }));
//
// Threads: a Context may be shared by every thread once configured (the configuration calls are
// not synchronised with connections being made from it); a tls::Socket belongs to one thread,
// like the Socket underneath.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cogent/detail/export.hpp"
#include "cogent/server.hpp"
#include "cogent/socket.hpp"
#include "cogent/time.hpp"

// OpenSSL's types, for native_handle() (no OpenSSL header is included here).
struct ssl_st;
struct ssl_ctx_st;
struct x509_st;
struct ssl_session_st;

namespace cogent::tls {

// A TLS failure that is not a plain system error: a protocol error, a bad certificate or key, an
// alert from the peer. what() says what failed and OpenSSL's reason ("wrong version number",
// "http request", "tlsv1 alert unknown ca"); reason() is that reason alone. System errors
// (ECONNRESET, EBADF...) are std::system_error and timeouts SocketTimeout, as for sockets.
class COGENT_API Error : public std::runtime_error {
public:
    Error(const std::string& what, std::string reason, unsigned long code = 0)
        : std::runtime_error(what), reason_(std::move(reason)), code_(code) {}
    const std::string& reason() const noexcept { return reason_; }
    // OpenSSL's packed error code (ERR_get_error), 0 when none.
    unsigned long code() const noexcept { return code_; }

private:
    std::string reason_;
    unsigned long code_;
};

// The peer's certificate did not verify (Python's SSLCertVerificationError). verify_message() is
// OpenSSL's text for verify_code(): "certificate has expired", "unable to get local issuer
// certificate" (unknown CA), "self-signed certificate"; a name that the certificate does not
// cover says "host name mismatch" and names the host asked for.
class COGENT_API VerificationError : public Error {
public:
    VerificationError(const std::string& what, long verify_code, std::string verify_message)
        : Error(what, "certificate verify failed"),
          verify_code_(verify_code),
          verify_message_(std::move(verify_message)) {}
    long verify_code() const noexcept { return verify_code_; }
    const std::string& verify_message() const noexcept { return verify_message_; }

private:
    long verify_code_;
    std::string verify_message_;
};

// Protocol versions, for Context::set_min_version / set_max_version.
enum class Version { tls1_0, tls1_1, tls1_2, tls1_3 };

// Which peer certificates a Context asks for and checks.
enum class Verify {
    none,      // ask for none, check none (a server's default)
    optional,  // servers: ask the client for one, check it when given
    required,  // check the peer's (a client's default); servers: a client must present one
};

// An X.509 certificate (the peer's). A shared, immutable value.
class COGENT_API Certificate {
public:
    Certificate() = default;
    // Takes a reference of its own to `cert` (X509_up_ref).
    explicit Certificate(x509_st* cert);
    // The first certificate in PEM text; Error when there is none or it does not parse.
    static Certificate from_pem(std::string_view pem);

    explicit operator bool() const noexcept { return bool(x509_); }
    // RFC 2253 names: "CN=localhost,O=cogent test".
    std::string subject() const;
    std::string issuer() const;
    // The subject's common name ("" when none).
    std::string common_name() const;
    // The subjectAltName DNS names and IP addresses (as text).
    std::vector<std::string> dns_names() const;
    std::vector<std::string> ip_addresses() const;
    // Validity period.
    std::chrono::system_clock::time_point not_before() const;
    std::chrono::system_clock::time_point not_after() const;
    // Serial number in hex; PEM text; DER bytes.
    std::string serial() const;
    std::string pem() const;
    std::string der() const;
    x509_st* native_handle() const noexcept { return x509_.get(); }

private:
    std::shared_ptr<x509_st> x509_;
};

// A TLS session that a later connection to the same server may resume (an abbreviated
// handshake, from a session ticket). A shared value; empty when there is none. TLS 1.3
// sessions are single-use (RFC 8446, C.4): once a connection has resumed one it is no longer
// resumable(), and that connection's own session() (a fresh ticket) is the one to offer next.
// The context's session cache does this by itself.
class COGENT_API Session {
public:
    Session() = default;
    // Takes a reference of its own (SSL_SESSION_up_ref).
    explicit Session(ssl_session_st* s);
    explicit operator bool() const noexcept { return bool(s_); }
    // Whether a connection may still offer it (has a ticket or id and has not expired).
    bool resumable() const;
    ssl_session_st* native_handle() const noexcept { return s_.get(); }

private:
    std::shared_ptr<ssl_session_st> s_;
};

namespace detail {
struct ContextImpl;
}

// TLS settings, certificates and keys (Python's ssl.SSLContext, an SSL_CTX): made once, shared
// by any number of connections (copies share one context). The configuration calls throw Error
// naming the file and OpenSSL's reason, or std::invalid_argument for a bad argument.
class COGENT_API Context {
public:
    enum class Role { client, server };

    // A client context: peer verification on (Verify::required) with host name checking, the
    // system's CA store (load_default_verify_paths), TLS 1.2 at least, renegotiation refused,
    // and a session cache that lets connections to the same host and port resume.
    static Context client();
    // A server context: no client certificates asked for, TLS 1.2 at least, session tickets
    // on, renegotiation refused. Give it a certificate chain and key before use.
    static Context server();
    // An empty context of either role with the same defaults (a client one without the
    // system CA store loaded).
    explicit Context(Role role);

    Role role() const noexcept;

    // Certificate chain (leaf first) and private key from PEM files; keyfile "" means the key
    // is in certfile. `password` decrypts an encrypted key. Error when a file cannot be read or
    // parsed, or the key does not match the certificate.
    void load_cert_chain(const std::string& certfile, const std::string& keyfile = "",
                         const std::string& password = "");
    // Same from PEM text in memory.
    void use_cert_chain_pem(std::string_view cert_chain_pem, std::string_view key_pem,
                            const std::string& password = "");
    // Trust the CAs in a PEM file and/or a hashed directory (c_rehash); either may be "".
    void load_verify_locations(const std::string& cafile, const std::string& capath = "");
    // Trust the CAs in PEM text.
    void load_verify_pem(std::string_view ca_pem);
    // Trust the system's default store (/etc/ssl/certs on Debian; SSL_CERT_FILE/DIR override).
    void load_default_verify_paths();

    // Which certificates to ask for and check (see Verify).
    void set_verify(Verify mode);
    Verify verify() const noexcept;
    // Clients: check the certificate against the host name given to the socket (or the IP
    // address). On by default for client contexts; needs Verify::required.
    void set_check_hostname(bool on);
    bool check_hostname() const noexcept;

    // Lowest and highest protocol version allowed (defaults: TLS 1.2, and TLS 1.3).
    void set_min_version(Version v);
    void set_max_version(Version v);
    // OpenSSL cipher lists: TLS 1.2 (SSL_CTX_set_cipher_list) and TLS 1.3 suites
    // (SSL_CTX_set_ciphersuites). Error when none of the names is known.
    void set_ciphers(const std::string& list);
    void set_ciphersuites(const std::string& list);

    // ALPN: the protocols this side speaks, most preferred first ("h2", "http/1.1"). A server
    // picks its first that the client offers; no common protocol leaves ALPN unused (the
    // connection goes on, alpn_protocol() is ""). std::invalid_argument for an empty name or
    // one longer than 255 bytes.
    void set_alpn_protocols(const std::vector<std::string>& protocols);

    // Servers: choose the context for a client's SNI name (Python's sni_callback). Return a
    // server Context to switch to (its certificate is then used), or nullopt to keep this one.
    // Called in the handshake, on the connection's thread; an exception ends the handshake
    // with an "unrecognized name" alert.
    using SniCallback = std::function<std::optional<Context>(std::string_view server_name)>;
    void set_sni_callback(SniCallback cb);

    // Session resumption. Servers: session tickets (on by default; off makes every handshake a
    // full one). Clients: the cache of sessions per host and port that connections made from
    // this context resume from (on by default; off: only an explicit Socket::set_session).
    void set_session_tickets(bool on);
    // Servers, TLS 1.3: how many tickets a full handshake ends with (OpenSSL's default, 2, lets
    // a client open two connections that both resume; each costs the server a ticket's
    // encryption and a record). 0 turns tickets off.
    void set_num_tickets(std::size_t n);
    void set_session_cache(bool on);
    // Drop every cached client session.
    void clear_session_cache();

    ssl_ctx_st* native_handle() const noexcept;
    std::shared_ptr<detail::ContextImpl> impl() const noexcept { return impl_; }

private:
    explicit Context(std::shared_ptr<detail::ContextImpl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<detail::ContextImpl> impl_;
};

// Per-socket settings.
struct SocketOptions {
    // Clients: the name sent as SNI and checked against the certificate (a numeric address is
    // checked against the certificate's IP addresses and not sent). Empty: no SNI; with
    // check_hostname on, the Socket constructor throws std::invalid_argument.
    std::string server_hostname;
    // A session to resume (clients); otherwise the context's cache is asked.
    Session session;
    // An end of stream without the peer's close_notify (a TCP close between records) reads as
    // the end (recv returns 0), as Python's suppress_ragged_eofs; false makes it an Error
    // ("unexpected eof while reading"). A close in the middle of a record is always an Error.
    bool suppress_ragged_eofs = true;
    // TCP sockets: set TCP_NODELAY (as nginx and Go do for TLS). TLS writes whole records, and
    // a handshake's last flight is followed at once by small records (session tickets, the
    // first response): with Nagle's algorithm on, each waits for the peer's delayed ACK (about
    // 40 ms on Linux).
    bool nodelay = true;
};

// What Socket::unwrap() returns: the plain socket, and the bytes of the plain stream that were
// already received (they come before anything plain.recv() returns).
struct Unwrapped {
    cogent::Socket socket;
    std::string buffered;
};

// TLS over a connected socket (Python's SSLSocket). Owns the socket. Move-only.
//
// Every call honours the socket's timeout (set_timeout: the handshake, each recv, each send, a
// whole sendall) and any Timeout scope, parks only the calling greenlet, and throws what the
// socket's calls throw: std::system_error (EBADF once closed, also when closed by another
// greenlet while waiting; ECONNRESET...), SocketTimeout, ConcurrentObjectUseError (a second
// reader or writer), and Error / VerificationError for TLS failures. One greenlet may read
// while another writes, including when OpenSSL needs to read during a write or to write during
// a read. recv and send make the handshake first when it has not been made.
class COGENT_API Socket {
public:
    Socket() noexcept;
    // Wrap a connected stream socket (taken over). The handshake is not made yet: call
    // handshake(), or let the first recv/send make it. std::invalid_argument for an invalid or
    // non-stream socket; Error when OpenSSL cannot make the connection object.
    Socket(cogent::Socket sock, const Context& ctx, SocketOptions options = {});
    // Same over a connected socket fd (taken over as cogent::Socket::adopt does).
    static Socket adopt(int fd, const Context& ctx, SocketOptions options = {});
    Socket(Socket&& o) noexcept;
    Socket& operator=(Socket&& o) noexcept;
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    // Closes (see close()).
    ~Socket();

    // Make the handshake (waiting cooperatively). `timeout` bounds it instead of the socket's
    // timeout. A no-op once made. Throws VerificationError when the peer's certificate is
    // refused, Error for a protocol failure, and as above.
    void handshake();
    void handshake(TimeoutArg timeout);
    bool handshake_done() const noexcept;

    // Receive up to n decrypted bytes; 0 at the end of the stream (close_notify, or a ragged
    // end with suppress_ragged_eofs).
    std::size_t recv(void* buf, std::size_t n);
    std::string recv(std::size_t max);
    std::size_t recv_into(void* buf, std::size_t n) { return recv(buf, n); }
    // Decrypted bytes already received and buffered (readable without waiting).
    std::size_t pending() const noexcept;
    // Send some of the bytes (one TLS record or more); returns how many.
    std::size_t send(const void* buf, std::size_t n);
    template <std::integral N>
    std::size_t send(const char* buf, N n) {
        return send(static_cast<const void*>(buf), std::size_t(n));
    }
    std::size_t send(std::string_view data) { return send(data.data(), data.size()); }
    // Send all of the bytes; with a timeout, the whole call must finish within it.
    void sendall(const void* buf, std::size_t n);
    template <std::integral N>
    void sendall(const char* buf, N n) {
        sendall(static_cast<const void*>(buf), std::size_t(n));
    }
    void sendall(std::string_view data) { sendall(data.data(), data.size()); }

    // Send close_notify (the TLS end of this side's stream); later sends fail. The socket stays
    // open for reading what the peer still sends. A no-op before the handshake or when sent.
    void shutdown();
    // Full TLS shutdown: send close_notify, read until the peer's, and return the plain socket
    // with the plain bytes that arrived right behind the peer's close_notify (already read from
    // the kernel together with it; the stream goes on with them). TLS data the peer sends
    // before its close_notify is discarded. This object is then closed.
    //     auto [plain, rest] = tls_sock.unwrap();
    Unwrapped unwrap();
    // Wake greenlets waiting on the socket (EBADF), then close it, without close_notify.
    // Idempotent.
    void close() noexcept;

    // Per-socket timeout (the underlying socket's).
    void set_timeout(TimeoutArg t) noexcept;
    TimeoutArg timeout() const noexcept;
    int fileno() const noexcept;
    bool is_open() const noexcept;
    // The socket underneath (for addresses and options; reading or writing it directly breaks
    // the TLS stream).
    cogent::Socket& socket() noexcept;
    Address peer_address() const;
    Address local_address() const;

    // After the handshake:
    // The peer's certificate (empty when it sent none).
    Certificate peer_certificate() const;
    // The peer's chain as sent, leaf first.
    std::vector<Certificate> peer_chain() const;
    // The ALPN protocol agreed ("" when none).
    std::string alpn_protocol() const;
    // "TLSv1.3", "TLSv1.2".
    std::string version() const;
    // The cipher suite's name ("TLS_AES_256_GCM_SHA384").
    std::string cipher() const;
    // The SNI name the client sent (servers; "" when none).
    std::string server_name() const;
    // Whether the handshake resumed a session.
    bool session_reused() const;
    // This connection's session, to resume later (clients). TLS 1.3 servers send tickets after
    // the handshake, so ask after the first recv for a resumable one.
    Session session() const;
    // A session to offer (clients, before the handshake). std::logic_error after it.
    void set_session(const Session& s);
    // The options this socket was made with.
    const SocketOptions& options() const noexcept;

    ssl_st* native_handle() const noexcept;

    struct Impl;  // internal (src/tls/socket.cpp)

private:
    std::shared_ptr<Impl> p_;
};

// A buffered reader over a TLS socket (readline, read_exactly, read_some: gevent's makefile('rb')
// on an SSL socket). Borrows the socket, which must outlive it; reads throw what recv throws and
// leave the bytes read before an exception buffered.
inline cogent::SocketReader make_reader(Socket& sock, std::size_t buffer_size = 64 * 1024) {
    return cogent::SocketReader(
        [](void* src, void* buf, std::size_t n) { return static_cast<Socket*>(src)->recv(buf, n); },
        &sock, buffer_size);
}

// Options of tls::handler.
struct HandlerOptions {
    // Bound on each connection's handshake (absent: none; a client that never finishes its
    // handshake then holds its greenlet until it goes away).
    TimeoutArg handshake_timeout = std::chrono::seconds(10);
    // Called (in the connection's greenlet) when a handshake fails or times out, with the
    // error and the peer; the connection is then closed. Default: nothing is reported (scanners
    // and plain-text clients are common on a public port).
    std::function<void(const std::exception& error, const Address& peer)> on_handshake_error;
};

// A StreamServer handler that makes each connection TLS with `ctx` (a server context): in the
// connection's greenlet, the handshake (bounded by options.handshake_timeout, the socket's
// timeout being left as it was for the handler), then handler(tls_socket, peer). A failed
// handshake closes that connection only. Use it as StreamServer's handler (any constructor:
// threads, pools, a given listener):
//     cogent::StreamServer server(addr, cogent::tls::handler(ctx, handle));
// std::invalid_argument for a client context, a server context without a certificate, or a
// null handler.
using Handler = std::function<void(Socket& socket, const Address& peer)>;
COGENT_API StreamServer::Handler handler(const Context& ctx, Handler handler,
                                         HandlerOptions options = {});

// Connect to host:port (as cogent::create_connection) and make the handshake, with `host` as
// the server name (SNI, and the name checked when ctx checks host names). The timeout bounds
// the connect and the handshake each and becomes the socket's timeout. std::invalid_argument
// for a server context; otherwise throws what the connect and the handshake throw.
COGENT_API Socket create_connection(std::string_view host, std::uint16_t port, const Context& ctx,
                                    TimeoutArg timeout = {},
                                    std::optional<Address> source = std::nullopt);

}  // namespace cogent::tls

namespace cogent {
// create_connection(host, port, tls_context): tls::create_connection.
inline tls::Socket create_connection(std::string_view host, std::uint16_t port,
                                     const tls::Context& ctx, TimeoutArg timeout = {},
                                     std::optional<Address> source = std::nullopt) {
    return tls::create_connection(host, port, ctx, timeout, std::move(source));
}
}  // namespace cogent
