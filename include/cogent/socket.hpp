// Cooperative sockets: TCP, UDP and Unix-domain, IPv4 and IPv6. Blocking calls park only the
// calling greenlet ("try the call; on EAGAIN wait for the fd; retry").
#pragma once

#include <sys/socket.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/io.hpp"
#include "cogent/time.hpp"

namespace cogent {

// A socket address: IPv4, IPv6 or Unix-domain. A plain value (copyable, no allocation).
class COGENT_API Address {
public:
    // An empty address (family() == AF_UNSPEC).
    Address() noexcept = default;
    // A numeric IPv4 or IPv6 host ("127.0.0.1", "::1", "[::1]", "fe80::1%eth0", "" or
    // "0.0.0.0" for any) and a port. std::invalid_argument naming the host when it is not a
    // numeric address (an Address is a plain value: resolve host names with getaddrinfo or
    // resolve_addresses, dns.hpp).
    Address(std::string_view host, std::uint16_t port);
    // A Unix-domain path; a leading '@' names an abstract socket. std::invalid_argument when
    // empty, too long (107 bytes at most) or containing a NUL byte.
    static Address unix_path(std::string_view path);
    // Copy from a sockaddr (std::invalid_argument when len is too large or the family unknown).
    // len == 0 gives the empty address; an unnamed Unix socket gives a Unix address with an
    // empty path.
    static Address from_sockaddr(const sockaddr* sa, socklen_t len);

    // AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for the empty address.
    int family() const noexcept { return storage_.ss_family; }
    // The sockaddr to pass to bind/connect/sendto, and its length.
    const sockaddr* sockaddr_ptr() const noexcept {
        return reinterpret_cast<const sockaddr*>(&storage_);
    }
    sockaddr* sockaddr_ptr() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
    socklen_t length() const noexcept { return len_; }
    // The numeric host ("127.0.0.1", "::1"), or the path for a Unix address.
    std::string host() const;
    // The port (0 for Unix addresses).
    std::uint16_t port() const noexcept;
    // "127.0.0.1:80", "[::1]:80", "/run/x.sock", "@abstract", "(unnamed)" (an unbound Unix
    // socket), "(unspecified)" (the empty address).
    std::string to_string() const;
    // Same family, host and port (IPv6: and scope); same path for Unix addresses.
    friend bool operator==(const Address& a, const Address& b) noexcept;

private:
    sockaddr_storage storage_{};
    socklen_t len_ = 0;
};
COGENT_API bool operator==(const Address& a, const Address& b) noexcept;  // exported (friend above)

// A socket operation did not finish within the socket's timeout (gevent's socket.timeout):
// std::system_error with ETIMEDOUT and "timed out" plus what and which peer in the message.
class COGENT_API SocketTimeout : public std::system_error {
public:
    explicit SocketTimeout(const std::string& what)
        : std::system_error(ETIMEDOUT, std::generic_category(), what) {}
};

// A cooperative socket (gevent.socket.socket). Owns its fd (closed by the destructor and close(),
// waking any greenlet waiting on it with EBADF first). Move-only. The fd is always O_NONBLOCK
// underneath; the blocking behaviour the user sees comes from the socket's timeout:
//   absent (the default) - calls block (only this greenlet) until done;
//   zero                 - calls never block: what would block throws std::system_error
//                          with EAGAIN (EINPROGRESS for connect), like gevent's BlockingIOError;
//   positive             - each call must finish within it, else SocketTimeout.
// Errors are std::system_error carrying errno, with the operation and the peer address (when
// known) in the message. Sends never raise SIGPIPE (MSG_NOSIGNAL). One greenlet may read while
// another writes; two reading (or two writing) at once is ConcurrentObjectUseError.
// A socket's waits belong to the hub of the thread that uses it: use it from one thread, and
// close (or release) it on that thread, which drops the read watcher kept armed between reads.
// A method called on a closed or moved-from socket throws std::system_error with EBADF.
class COGENT_API Socket {
public:
    // An invalid socket (fileno() == -1).
    Socket() noexcept = default;
    // socket(2) with SOCK_NONBLOCK | SOCK_CLOEXEC; std::system_error on failure.
    Socket(int family, int type, int protocol = 0);
    // Take ownership of an open socket fd (made non-blocking; its FD_CLOEXEC flag is left as
    // it is). std::invalid_argument for fd < 0; std::system_error (EBADF, ENOTSOCK) when fd is
    // not an open socket, in which case the fd stays the caller's.
    static Socket adopt(int fd);
    // A connected pair (socketpair(2)), AF_UNIX by default; std::system_error on failure.
    static std::pair<Socket, Socket> pair(int type = SOCK_STREAM, int family = AF_UNIX);

    // Moves leave the source invalid (fileno() == -1); assigning closes what this socket held.
    Socket(Socket&& o) noexcept;
    Socket& operator=(Socket&& o) noexcept;
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    // Closes the socket (see close()).
    ~Socket();

    // The fd, or -1 once closed, released or moved from.
    int fileno() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    // AF_INET, AF_INET6 or AF_UNIX (0 for an invalid socket).
    int family() const noexcept { return family_; }
    // SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET (0 for an invalid socket).
    int type() const noexcept { return type_; }
    // Give up ownership: returns the fd (still non-blocking; greenlets waiting on it are woken
    // with EBADF, as by close), leaves this socket invalid. -1 for an invalid socket.
    int release() noexcept;
    // gevent spelling of release().
    int detach() noexcept { return release(); }

    // Per-socket timeout for every later call (see the class comment; gevent's settimeout).
    void set_timeout(TimeoutArg timeout) noexcept { timeout_ = timeout; }
    TimeoutArg timeout() const noexcept { return timeout_; }
    // gevent's setblocking: true = no timeout (block), false = zero timeout (never block).
    void set_blocking(bool blocking) noexcept {
        timeout_ = blocking ? TimeoutArg() : TimeoutArg(Duration::zero());
    }

    // bind(2); std::system_error naming the address (EADDRINUSE...).
    void bind(const Address& addr);
    // listen(2); std::system_error on failure.
    void listen(int backlog = 1024);
    // Connect, waiting cooperatively. std::system_error (ECONNREFUSED...) or SocketTimeout.
    void connect(const Address& addr);
    // Connect to host:port: a numeric host, or a name resolved through the thread's resolver
    // (dns.hpp) to the first address of this socket's family. Throws DnsError, and as connect.
    void connect(std::string_view host, std::uint16_t port);
    // As connect, but returns 0 or the errno instead of throwing (SocketTimeout: ETIMEDOUT).
    int connect_ex(const Address& addr);
    // Accept one connection (waiting cooperatively). As in gevent, the new socket starts with
    // no timeout. Transient errors (ECONNABORTED) are retried; others throw.
    std::pair<Socket, Address> accept();

    // The calls below wait cooperatively as the timeout says (MSG_DONTWAIT in flags: do not
    // wait). They throw std::system_error (EBADF when closed, meanwhile too), SocketTimeout,
    // ConcurrentObjectUseError (a second reader or writer), and whatever kill/Timeout throws.

    // Receive up to n bytes; 0 means the peer closed (stream) or an empty datagram.
    std::size_t recv(void* buf, std::size_t n, int flags = 0);
    // Receive up to max bytes as a string ("" at end of stream).
    std::string recv(std::size_t max, int flags = 0);
    // gevent spelling of recv into a caller's buffer.
    std::size_t recv_into(void* buf, std::size_t n, int flags = 0) { return recv(buf, n, flags); }
    // Receive a datagram (or stream data) and its source address.
    std::pair<std::size_t, Address> recvfrom(void* buf, std::size_t n, int flags = 0);
    // Send some of the bytes; returns how many were sent.
    std::size_t send(const void* buf, std::size_t n, int flags = 0);
    // send("abc", 3): a char pointer and a count mean bytes, not a string and flags.
    template <std::integral N>
    std::size_t send(const char* buf, N n, int flags = 0) {
        return send(static_cast<const void*>(buf), std::size_t(n), flags);
    }
    std::size_t send(std::string_view data, int flags = 0) {
        return send(data.data(), data.size(), flags);
    }
    // Send all of the bytes (looping and waiting). With a timeout, the whole call must finish
    // within it.
    void sendall(const void* buf, std::size_t n, int flags = 0);
    template <std::integral N>
    void sendall(const char* buf, N n, int flags = 0) {
        sendall(static_cast<const void*>(buf), std::size_t(n), flags);
    }
    void sendall(std::string_view data, int flags = 0) { sendall(data.data(), data.size(), flags); }
    // Send a datagram to `to`; returns how many bytes were sent.
    std::size_t sendto(const void* buf, std::size_t n, const Address& to, int flags = 0);
    std::size_t sendto(std::string_view data, const Address& to, int flags = 0) {
        return sendto(data.data(), data.size(), to, flags);
    }
    // sendmsg(2) / recvmsg(2) (scatter/gather, ancillary data such as SCM_RIGHTS), waiting as
    // send/recv do; return the byte count.
    std::size_t sendmsg(const msghdr* msg, int flags = 0);
    std::size_t recvmsg(msghdr* msg, int flags = 0);
    // shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR; std::system_error on failure (ENOTCONN...).
    void shutdown(int how);
    // Wake greenlets waiting on this socket (EBADF), then close the fd. Idempotent.
    void close() noexcept;

    // getsockname(2) / getpeername(2); std::system_error on failure (ENOTCONN...).
    Address local_address() const;
    Address peer_address() const;
    // setsockopt/getsockopt for int-valued options; std::system_error on failure.
    void set_option(int level, int name, int value);
    int get_option(int level, int name) const;

private:
    struct Owned {};  // tag: the (fd, family, type) constructor would clash with the public one
    Socket(Owned, int fd, int family, int type) noexcept : fd_(fd), family_(family), type_(type) {}
    int fd_check(const char* op) const;
    [[noreturn]] void fail(int err, const char* op) const;
    [[noreturn]] void fail_timeout(const char* op) const;
    std::string peer_name() const;
    int fd_ = -1;
    int family_ = 0;
    int type_ = 0;
    TimeoutArg timeout_{};
    Address peer_{};  // remembered by connect/accept for error messages
};

// Connect to host:port (a numeric address or a name, resolved through the thread's resolver),
// trying each address in turn; `source` binds the local end first (and limits the addresses to
// its family). The timeout bounds each connect and becomes the returned socket's timeout.
// Throws DnsError when the name does not resolve, else the last connect's error.
COGENT_API Socket create_connection(std::string_view host, std::uint16_t port,
                                    TimeoutArg timeout = {},
                                    std::optional<Address> source = std::nullopt);

// A buffered reader over a socket, for line protocols (gevent's makefile('rb')). Borrows the
// socket, which must outlive it. Reads honour the socket's timeout and throw what recv throws;
// bytes read before an exception stay buffered, so nothing is lost.
class COGENT_API SocketReader {
public:
    explicit SocketReader(Socket& sock, std::size_t buffer_size = 64 * 1024);
    // Over any stream: recv(source, buf, n) reads up to n bytes (0 at the end), waiting as it
    // must, and throws what its reads throw (tls::make_reader uses it for TLS sockets).
    // std::invalid_argument for a null recv.
    using RecvFn = std::size_t (*)(void* source, void* buf, std::size_t n);
    SocketReader(RecvFn recv, void* source, std::size_t buffer_size = 64 * 1024);
    // Up to and including the next '\n'; shorter at end of stream; "" once at end. A line longer
    // than max_line throws std::length_error (the bytes stay buffered).
    std::string readline(std::size_t max_line = 64 * 1024);
    // Exactly n bytes; std::runtime_error ("connection closed after K of n bytes") when the
    // stream ends first.
    std::string read_exactly(std::size_t n);
    // Whatever is buffered, or one recv of up to max bytes when nothing is ("" at end).
    std::string read_some(std::size_t max = 64 * 1024);
    // Bytes read from the socket but not yet returned.
    std::size_t buffered() const noexcept { return end_ - begin_; }

private:
    bool fill();
    void unread(std::string_view bytes);
    RecvFn recv_;
    void* source_;
    std::string buf_;
    std::size_t begin_ = 0, end_ = 0;
};

}  // namespace cogent
