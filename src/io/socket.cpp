// Cooperative sockets (socket.hpp). Every call is "try the system call; on EAGAIN park on the fd;
// retry" (detail::retry_io), except connect, which waits once for the handshake. The fd is
// always non-blocking; the socket's timeout decides whether and how long to park.
//
// The read path is the hot one (a server's recv per request), so it is kept to: one recv, and a
// park only when the kernel has nothing. Two things make that work:
//   - reads park with keep_read (retry_io's `owned`), which leaves the fd's read watcher armed
//     between reads (a Socket always closes through notify_closing, which drops it), so a
//     steady connection pays no epoll_ctl per request;
//   - the readiness hint: after a recv that drained the socket (EAGAIN, or a short read on a
//     stream), fd_drained() records it, and the next recv parks at once instead of paying a
//     recv that would say EAGAIN. The armed, level-triggered watcher fires for data that
//     arrives meanwhile, so the hint can delay nothing and lose nothing.
#include "cogent/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "cogent/hub.hpp"
#include "io/fdwait.hpp"
#include "io/retry_io.hpp"

namespace cogent {

namespace {

constexpr socklen_t kUnixPathMax = sizeof(sockaddr_un::sun_path) - 1;  // room for the NUL

[[noreturn, gnu::cold]] void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

// Parses "[v6]", "v6", "v6%scope" or "v4" into storage; false when not numeric.
bool parse_numeric(std::string_view host, std::uint16_t port, sockaddr_storage& ss,
                   socklen_t& len) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "0.0.0.0";
    if (host.size() >= 64) return false;
    char buf[64];
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
    if (host.find(':') == std::string_view::npos) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        if (inet_pton(AF_INET, buf, &a->sin_addr) != 1) return false;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        len = sizeof(sockaddr_in);
        return true;
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    char* scope = std::strchr(buf, '%');
    if (scope) {
        *scope++ = '\0';
        char* end = nullptr;
        unsigned long id = std::strtoul(scope, &end, 10);
        if (*scope && end && *end == '\0') {
            a->sin6_scope_id = std::uint32_t(id);
        } else if (!(a->sin6_scope_id = if_nametoindex(scope))) {
            return false;
        }
    }
    if (inet_pton(AF_INET6, buf, &a->sin6_addr) != 1) return false;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Thrown when an operation meets a socket that is closed, released or moved from.
[[noreturn, gnu::cold]] void throw_closed(const char* op) {
    throw_errno(EBADF, std::string("cogent: Socket::") + op + " on a closed socket");
}

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

}  // namespace

// ---- Address ----------------------------------------------------------------------------------

Address::Address(std::string_view host, std::uint16_t port) {
    if (!parse_numeric(host, port, storage_, len_)) {
        storage_ = {};
        len_ = 0;
        throw std::invalid_argument(
            "cogent: " + quoted(host) +
            " is not a numeric IPv4 or IPv6 address (resolve host names with "
            "getaddrinfo or resolve_addresses, dns.hpp)");
    }
}

Address Address::unix_path(std::string_view path) {
    if (path.empty()) throw std::invalid_argument("cogent: empty Unix socket path");
    if (path.find('\0') != std::string_view::npos)
        throw std::invalid_argument("cogent: Unix socket path contains a NUL byte");
    if (path.size() > kUnixPathMax)
        throw std::invalid_argument("cogent: Unix socket path is too long (" +
                                    std::to_string(path.size()) + " bytes, at most " +
                                    std::to_string(kUnixPathMax) + "): " + quoted(path));
    Address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    if (path.front() == '@') {
        un->sun_path[0] = '\0';  // abstract: the name is exactly the bytes after the NUL
        a.len_ = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
    } else {
        a.len_ = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    }
    return a;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) {
    Address a;
    if (len == 0) return a;
    if (!sa || len > sizeof(sockaddr_storage) || len < socklen_t(sizeof(sa_family_t)))
        throw std::invalid_argument("cogent: bad sockaddr length " + std::to_string(len));
    const int fam = sa->sa_family;
    if ((fam == AF_INET && len < sizeof(sockaddr_in)) ||
        (fam == AF_INET6 && len < sizeof(sockaddr_in6)) ||
        (fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX))
        throw std::invalid_argument("cogent: unsupported sockaddr (family " + std::to_string(fam) +
                                    ", length " + std::to_string(len) + ")");
    std::memcpy(&a.storage_, sa, len);
    a.len_ = len;
    return a;
}

std::string Address::host() const {
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    switch (family()) {
        case AF_INET: {
            auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
            inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
            return buf;
        }
        case AF_INET6: {
            auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
            inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
            std::string s = buf;
            if (a->sin6_scope_id) s += "%" + std::to_string(a->sin6_scope_id);
            return s;
        }
        case AF_UNIX: {
            auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
            const std::size_t n =
                len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
            if (n == 0) return "";
            if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
            return std::string(un->sun_path, strnlen(un->sun_path, n));
        }
        default:
            return "";
    }
}

std::uint16_t Address::port() const noexcept {
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    return 0;
}

std::string Address::to_string() const {
    switch (family()) {
        case AF_INET:
            return host() + ":" + std::to_string(port());
        case AF_INET6:
            return "[" + host() + "]:" + std::to_string(port());
        case AF_UNIX: {
            std::string h = host();
            return h.empty() ? "(unnamed)" : h;
        }
        default:
            return "(unspecified)";
    }
}

bool operator==(const Address& a, const Address& b) noexcept {
    if (a.family() != b.family()) return false;
    switch (a.family()) {
        case AF_INET: {
            auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage_);
            auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage_);
            return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        case AF_INET6: {
            auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage_);
            auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage_);
            return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                   std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
        }
        case AF_UNIX:
            return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
        default:
            return true;
    }
}

// ---- Socket: lifetime -------------------------------------------------------------------------

Socket::Socket(int family, int type, int protocol) {
    const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int fd = ::socket(family, base | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        throw_errno(errno, "cogent: socket(family " + std::to_string(family) + ", type " +
                               std::to_string(base) + ", protocol " + std::to_string(protocol) +
                               ")");
    fd_ = fd;
    family_ = family;
    type_ = base;
}

Socket Socket::adopt(int fd) {
    if (fd < 0)
        throw std::invalid_argument("cogent: Socket::adopt: negative file descriptor (" +
                                    std::to_string(fd) + ")");
    int family = 0, type = 0;
    socklen_t len = sizeof family;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0)
        throw_errno(errno, "cogent: Socket::adopt(fd " + std::to_string(fd) + ")");
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        throw_errno(errno, "cogent: Socket::adopt(fd " + std::to_string(fd) + ")");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0))
        throw_errno(errno, "cogent: Socket::adopt(fd " + std::to_string(fd) + "): O_NONBLOCK");
    return Socket(Owned{}, fd, family, type);
}

std::pair<Socket, Socket> Socket::pair(int type, int family) {
    const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int sv[2];
    if (::socketpair(family, base | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        throw_errno(errno, "cogent: socketpair(family " + std::to_string(family) + ", type " +
                               std::to_string(base) + ")");
    return {Socket(Owned{}, sv[0], family, base), Socket(Owned{}, sv[1], family, base)};
}

Socket::Socket(Socket&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      family_(std::exchange(o.family_, 0)),
      type_(std::exchange(o.type_, 0)),
      timeout_(std::exchange(o.timeout_, TimeoutArg())),
      peer_(std::exchange(o.peer_, Address())) {}

Socket& Socket::operator=(Socket&& o) noexcept {
    if (this != &o) {
        close();
        fd_ = std::exchange(o.fd_, -1);
        family_ = std::exchange(o.family_, 0);
        type_ = std::exchange(o.type_, 0);
        timeout_ = std::exchange(o.timeout_, TimeoutArg());
        peer_ = std::exchange(o.peer_, Address());
    }
    return *this;
}

Socket::~Socket() { close(); }

int Socket::release() noexcept {
    const int fd = std::exchange(fd_, -1);
    // The kept read watcher must not outlive our ownership: the new owner may ::close the fd.
    if (fd >= 0) notify_closing(fd);
    family_ = type_ = 0;
    peer_ = Address();
    return fd;
}

void Socket::close() noexcept {
    const int fd = std::exchange(fd_, -1);
    if (fd < 0) return;
    notify_closing(fd);
    ::close(fd);  // Linux frees the fd even when close reports EINTR: never retry
}

// ---- Socket: helpers --------------------------------------------------------------------------

int Socket::fd_check(const char* op) const {
    if (fd_ < 0) [[unlikely]]
        throw_closed(op);
    return fd_;
}

std::string Socket::peer_name() const {
    if (peer_.family() != AF_UNSPEC) return peer_.to_string();
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd_ >= 0 && getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        try {
            return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string();
        } catch (const std::invalid_argument&) {
        }
    }
    // Not connected (UDP, a listener): name our own end instead.
    std::string out = "fd " + std::to_string(fd_);
    len = sizeof ss;
    if (fd_ >= 0 && getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        try {
            out += " (" +
                   Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string() + ")";
        } catch (const std::invalid_argument&) {
        }
    }
    return out;
}

void Socket::fail(int err, const char* op) const {
    throw_errno(err, std::string("cogent: ") + op + " " + peer_name());
}

void Socket::fail_timeout(const char* op) const {
    throw SocketTimeout(std::string("cogent: timed out: ") + op + " " + peer_name());
}

// ---- Socket: connection set-up ----------------------------------------------------------------

void Socket::bind(const Address& addr) {
    const int fd = fd_check("bind");
    if (::bind(fd, addr.sockaddr_ptr(), addr.length()) != 0)
        throw_errno(errno, "cogent: bind to " + addr.to_string());
}

void Socket::listen(int backlog) {
    const int fd = fd_check("listen");
    if (::listen(fd, backlog) != 0) fail(errno, "listen on");
}

// Not retry_io: connect is not "repeat the call that said EAGAIN". EINPROGRESS is answered by
// one wait for writability and then SO_ERROR (the call is not made again), and a Unix
// listener's EAGAIN has no fd event to park on (the socket is always writable), so it sleeps.
void Socket::connect(const Address& addr) {
    const int fd = fd_check("connect");
    const std::string_view op = "connect to";
    auto failc = [&](int e) { throw_errno(e, "cogent: connect to " + addr.to_string()); };
    const bool nowait = timeout_.zero();
    detail::IoDeadline deadline(timeout_);  // one deadline, however many waits
    for (;;) {
        if (::connect(fd, addr.sockaddr_ptr(), addr.length()) == 0) break;
        int e = errno;
        if (e == EINPROGRESS || e == EALREADY || e == EINTR) {
            // TCP: the handshake goes on in the kernel; writable means it ended, SO_ERROR says
            // how. (After EINTR the connect also continues asynchronously.)
            if (nowait) failc(e == EINTR ? EINPROGRESS : e);
            if (!detail::fd_wait(fd, WRITE, deadline.left(), false, "Socket::connect()", true))
                throw SocketTimeout("cogent: timed out: " + std::string(op) + " " +
                                    addr.to_string());
            int err = get_option(SOL_SOCKET, SO_ERROR);
            if (err) failc(err);
            break;
        }
        if (would_block(e)) {
            // A Unix listener's backlog is full. Nothing signals when it drains (the unconnected
            // socket is always writable), so poll for it by retrying after a short sleep.
            if (nowait) failc(e);
            TimeoutArg left = deadline.left();
            if (!left.forever() && left.value() == Duration::zero())
                throw SocketTimeout("cogent: timed out: " + std::string(op) + " " +
                                    addr.to_string());
            Duration d = std::chrono::milliseconds(1);
            if (!left.forever()) d = std::min(d, left.value());
            cogent::sleep(d);
            continue;
        }
        failc(e);
    }
    peer_ = addr;
}

int Socket::connect_ex(const Address& addr) {
    try {
        connect(addr);
        return 0;
    } catch (const std::system_error& e) {
        return e.code().value();
    }
}

std::pair<Socket, Address> Socket::accept() {
    const int fd = fd_check("accept");
    detail::IoDeadline deadline(timeout_);
    sockaddr_storage ss;
    socklen_t len = 0;
    const detail::IoResult r = detail::retry_io(
        [&]() -> ssize_t {
            for (;;) {
                len = sizeof ss;
                int c = ::accept4(fd, reinterpret_cast<sockaddr*>(&ss), &len,
                                  SOCK_NONBLOCK | SOCK_CLOEXEC);
                // A connection that died in the queue is not the listener's failure.
                if (c >= 0 || (errno != ECONNABORTED && errno != EPROTO)) return c;
            }
        },
        fd, READ, deadline, "Socket::accept()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("accept on");
        fail(r.err, "accept on");  // EMFILE...: the server backs off
    }
    Socket s(Owned{}, int(r.n), family_, type_);
    // Linux reports an unnamed Unix peer with just the family (or nothing at all).
    if (len > sizeof ss) len = sizeof ss;
    s.peer_ = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    Address peer = s.peer_;
    return {std::move(s), peer};
}

// ---- Socket: data -----------------------------------------------------------------------------

namespace {

// A call with MSG_DONTWAIT never waits, whatever the socket's timeout.
TimeoutArg call_timeout(TimeoutArg timeout, int flags) {
    return (flags & MSG_DONTWAIT) ? TimeoutArg(Duration::zero()) : timeout;
}

}  // namespace

std::size_t Socket::recv(void* buf, std::size_t n, int flags) {
    const int fd = fd_check("recv");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    // A short read on a stream emptied the receive queue (a peek empties nothing).
    const std::size_t want = type_ == SOCK_STREAM && !(flags & MSG_PEEK) ? n : 0;
    const detail::IoResult r =
        detail::retry_io([&] { return ::recv(fd, buf, n, flags); }, fd, READ, deadline,
                         "Socket::recv()", {.owned = true, .want = want});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("recv from");
        fail(r.err, "recv from");
    }
    return std::size_t(r.n);
}

std::string Socket::recv(std::size_t max, int flags) {
    std::string s;
    s.resize(max);
    s.resize(recv(s.data(), max, flags));
    return s;
}

std::pair<std::size_t, Address> Socket::recvfrom(void* buf, std::size_t n, int flags) {
    const int fd = fd_check("recvfrom");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    const std::size_t want = type_ == SOCK_STREAM && !(flags & MSG_PEEK) ? n : 0;
    sockaddr_storage ss;
    socklen_t len = 0;
    const detail::IoResult r = detail::retry_io(
        [&] {
            len = sizeof ss;
            return ::recvfrom(fd, buf, n, flags, reinterpret_cast<sockaddr*>(&ss), &len);
        },
        fd, READ, deadline, "Socket::recvfrom()", {.owned = true, .want = want});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("recvfrom on");
        fail(r.err, "recvfrom on");
    }
    if (len > sizeof ss) len = sizeof ss;
    return {std::size_t(r.n), Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len)};
}

std::size_t Socket::recvmsg(msghdr* msg, int flags) {
    const int fd = fd_check("recvmsg");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    // No drain hint (want 0): the iovec total is not at hand.
    const detail::IoResult r =
        detail::retry_io([&] { return ::recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC); }, fd, READ,
                         deadline, "Socket::recvmsg()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("recvmsg from");
        fail(r.err, "recvmsg from");
    }
    return std::size_t(r.n);
}

std::size_t Socket::send(const void* buf, std::size_t n, int flags) {
    const int fd = fd_check("send");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    const detail::IoResult r =
        detail::retry_io([&] { return ::send(fd, buf, n, flags | MSG_NOSIGNAL); }, fd, WRITE,
                         deadline, "Socket::send()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("send to");
        fail(r.err, "send to");
    }
    return std::size_t(r.n);
}

void Socket::sendall(const void* buf, std::size_t n, int flags) {
    const int fd = fd_check("sendall");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));  // one deadline for the whole call
    auto* p = static_cast<const char*>(buf);
    const detail::IoResult r = detail::retry_io(
        [&]() -> ssize_t {
            for (;;) {  // at least one send, even of nothing
                ssize_t k = ::send(fd, p, n, flags | MSG_NOSIGNAL);
                if (k < 0) return -1;
                p += k;
                n -= std::size_t(k);
                if (n == 0) return 0;
                // A partial send: the buffer is full, but let the next try say so.
            }
        },
        fd, WRITE, deadline, "Socket::sendall()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("sendall to");
        fail(r.err, "sendall to");
    }
}

std::size_t Socket::sendto(const void* buf, std::size_t n, const Address& to, int flags) {
    const int fd = fd_check("sendto");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    const detail::IoResult r = detail::retry_io(
        [&] { return ::sendto(fd, buf, n, flags | MSG_NOSIGNAL, to.sockaddr_ptr(), to.length()); },
        fd, WRITE, deadline, "Socket::sendto()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) throw SocketTimeout("cogent: timed out: sendto " + to.to_string());
        throw_errno(r.err, "cogent: sendto " + to.to_string());
    }
    return std::size_t(r.n);
}

std::size_t Socket::sendmsg(const msghdr* msg, int flags) {
    const int fd = fd_check("sendmsg");
    detail::IoDeadline deadline(call_timeout(timeout_, flags));
    const detail::IoResult r =
        detail::retry_io([&] { return ::sendmsg(fd, msg, flags | MSG_NOSIGNAL); }, fd, WRITE,
                         deadline, "Socket::sendmsg()", {.owned = true});
    if (r.n < 0) [[unlikely]] {
        if (r.timed_out()) fail_timeout("sendmsg to");
        fail(r.err, "sendmsg to");
    }
    return std::size_t(r.n);
}

void Socket::shutdown(int how) {
    const int fd = fd_check("shutdown");
    if (::shutdown(fd, how) != 0) fail(errno, "shutdown of connection to");
}

// ---- Socket: addresses and options ------------------------------------------------------------

Address Socket::local_address() const {
    const int fd = fd_check("local_address");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        throw_errno(errno, "cogent: getsockname(fd " + std::to_string(fd) + ")");
    return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss),
                                  std::min<socklen_t>(len, sizeof ss));
}

Address Socket::peer_address() const {
    const int fd = fd_check("peer_address");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        throw_errno(errno, "cogent: getpeername(fd " + std::to_string(fd) + ")");
    return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss),
                                  std::min<socklen_t>(len, sizeof ss));
}

void Socket::set_option(int level, int name, int value) {
    const int fd = fd_check("set_option");
    if (setsockopt(fd, level, name, &value, sizeof value) != 0)
        throw_errno(errno, "cogent: setsockopt(fd " + std::to_string(fd) + ", level " +
                               std::to_string(level) + ", option " + std::to_string(name) + ")");
}

int Socket::get_option(int level, int name) const {
    const int fd = fd_check("get_option");
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, level, name, &value, &len) != 0)
        throw_errno(errno, "cogent: getsockopt(fd " + std::to_string(fd) + ", level " +
                               std::to_string(level) + ", option " + std::to_string(name) + ")");
    return value;
}

// ---- SocketReader -----------------------------------------------------------------------------

SocketReader::SocketReader(Socket& sock, std::size_t buffer_size)
    : SocketReader([](void* src, void* buf,
                      std::size_t n) { return static_cast<Socket*>(src)->recv(buf, n); },
                   &sock, buffer_size) {}

SocketReader::SocketReader(RecvFn recv, void* source, std::size_t buffer_size)
    : recv_(recv), source_(source), buf_(std::max<std::size_t>(buffer_size, 64), '\0') {
    if (!recv) throw std::invalid_argument("cogent: SocketReader: null recv function");
}

// One recv into the free space after the buffered bytes (moved to the front, or the buffer
// grown, when there is none). false at end of stream.
bool SocketReader::fill() {
    if (begin_ == end_) begin_ = end_ = 0;
    if (end_ == buf_.size()) {
        if (begin_ > 0) {
            std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        } else {
            buf_.resize(buf_.size() * 2);
        }
    }
    std::size_t n = recv_(source_, buf_.data() + end_, buf_.size() - end_);
    end_ += n;
    return n > 0;
}

// Put bytes back in front of what is buffered (after an exception mid-read).
void SocketReader::unread(std::string_view bytes) {
    if (bytes.empty()) return;
    std::string rest(buf_.data() + begin_, end_ - begin_);
    std::size_t cap = buf_.size();
    buf_.assign(bytes);
    buf_ += rest;
    end_ = buf_.size();
    begin_ = 0;
    if (buf_.size() < cap) buf_.resize(cap);
}

std::string SocketReader::readline(std::size_t max_line) {
    std::size_t scanned = 0;  // bytes already searched for '\n'
    for (;;) {
        const char* base = buf_.data() + begin_;
        const std::size_t avail = end_ - begin_;
        if (const void* nl = std::memchr(base + scanned, '\n', avail - scanned)) {
            std::size_t len = std::size_t(static_cast<const char*>(nl) - base) + 1;
            if (len > max_line) break;
            begin_ += len;
            return std::string(base, len);
        }
        scanned = avail;
        if (avail >= max_line) break;
        if (!fill()) {
            std::string rest(buf_.data() + begin_, end_ - begin_);
            begin_ = end_ = 0;
            return rest;
        }
    }
    throw std::length_error("cogent: SocketReader::readline: line longer than " +
                            std::to_string(max_line) + " bytes");
}

std::string SocketReader::read_exactly(std::size_t n) {
    std::string out;
    out.reserve(n);
    std::size_t have = 0;  // valid bytes in out
    try {
        while (have < n) {
            if (begin_ == end_) {
                // A large remainder goes straight into the result, skipping the buffer.
                const std::size_t want = n - have;
                if (want >= buf_.size()) {
                    out.resize(n);
                    std::size_t got = recv_(source_, out.data() + have, want);
                    have += got;
                    out.resize(have);
                    if (got == 0) break;
                    continue;
                }
                if (!fill()) break;
            }
            const std::size_t take = std::min(end_ - begin_, n - have);
            out.append(buf_.data() + begin_, take);
            begin_ += take;
            have += take;
        }
    } catch (...) {
        out.resize(have);
        unread(out);
        throw;
    }
    if (have < n) {
        unread(out);
        throw std::runtime_error("cogent: SocketReader::read_exactly: connection closed after " +
                                 std::to_string(have) + " of " + std::to_string(n) + " bytes");
    }
    return out;
}

std::string SocketReader::read_some(std::size_t max) {
    if (begin_ != end_) {
        const std::size_t take = std::min(end_ - begin_, max);
        std::string out(buf_.data() + begin_, take);
        begin_ += take;
        return out;
    }
    std::string out(max, '\0');
    out.resize(recv_(source_, out.data(), max));
    return out;
}

}  // namespace cogent
