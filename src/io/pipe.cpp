// Pipes (pipe.hpp): nb_read/nb_write-style calls on any non-blocking fd, and the Pipe message
// channel. Every call is "try the system call; on EAGAIN park on the fd; retry" (retry_io).
#include "cogent/pipe.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "cogent/io.hpp"
#include "cogent/lock.hpp"
#include "io/fdwait.hpp"
#include "io/retry_io.hpp"

namespace cogent {

using detail::IoDeadline;
using detail::IoResult;
using detail::retry_io;

namespace {

[[noreturn]] void fail(int err, const char* op, int fd, const char* detail = nullptr) {
    std::string msg = std::string("cogent: ") + op + " on fd " + std::to_string(fd);
    if (detail) msg += std::string(": ") + detail;
    throw std::system_error(err, std::generic_category(), msg);
}

// The wait did not finish in time: EAGAIN for a zero timeout (gevent's BlockingIOError),
// ETIMEDOUT otherwise (as Socket's SocketTimeout).
[[noreturn]] void fail_timeout(const char* op, int fd, TimeoutArg timeout) {
    if (timeout.zero()) fail(EAGAIN, op, fd, "would block (zero timeout)");
    char buf[64];
    snprintf(buf, sizeof buf, "timed out after %g s", timeout.seconds());
    fail(ETIMEDOUT, op, fd, buf);
}

// The end of a failed retry_io: the timeout (as fail_timeout) when the wait ran out or the
// deadline was zero, else the errno.
[[noreturn]] void fail_io(const detail::IoResult& r, const char* op, int fd, TimeoutArg timeout) {
    if (r.timed_out() || r.err == EAGAIN || r.err == EWOULDBLOCK) fail_timeout(op, fd, timeout);
    fail(r.err, op, fd);
}

}  // namespace

// ---- Fd ----

Fd& Fd::operator=(Fd&& o) noexcept {
    if (this != &o) {
        close();
        fd_ = o.release();
    }
    return *this;
}

void Fd::close() noexcept {
    if (fd_ >= 0) cogent::close(release());
}

std::pair<Fd, Fd> pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        throw std::system_error(errno, std::generic_category(), "cogent: pipe()");
    return {Fd(fds[0]), Fd(fds[1])};
}

bool set_nonblocking(int fd) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) fail(errno, "set_nonblocking()", fd);
    if (fl & O_NONBLOCK) return false;
    if (::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) fail(errno, "set_nonblocking()", fd);
    return true;
}

// ---- read / write ----

std::size_t read(int fd, void* buf, std::size_t n, TimeoutArg timeout) {
    IoDeadline deadline(timeout);
    const IoResult r = retry_io([&] { return ::read(fd, buf, n); }, fd, READ, deadline, "read()");
    if (r.n < 0) fail_io(r, "read()", fd, timeout);
    return std::size_t(r.n);
}

std::size_t write(int fd, const void* buf, std::size_t n, TimeoutArg timeout) {
    IoDeadline deadline(timeout);
    const IoResult r =
        retry_io([&] { return ::write(fd, buf, n); }, fd, WRITE, deadline, "write()");
    if (r.n < 0) fail_io(r, "write()", fd, timeout);
    return std::size_t(r.n);
}

void write_all(int fd, const void* buf, std::size_t n, TimeoutArg timeout) {
    IoDeadline deadline(timeout);
    auto* p = static_cast<const char*>(buf);
    const IoResult r = retry_io(
        [&]() -> ssize_t {
            while (n > 0) {
                ssize_t k = ::write(fd, p, n);
                if (k < 0) return -1;
                p += k;
                n -= std::size_t(k);
            }
            return 0;
        },
        fd, WRITE, deadline, "write_all()");
    if (r.n < 0) fail_io(r, "write_all()", fd, timeout);
}

// ---- Pipe ----

namespace {
constexpr unsigned char kMagic[4] = {'C', 'G', 'P', '1'};
constexpr std::size_t kHeader = 8;
// Messages up to this size are assembled in the receive buffer; larger ones are read straight
// into the string that recv returns (no second copy, no buffer that stays huge).
constexpr std::size_t kBufferChunk = 64 * 1024;
}  // namespace

struct Pipe::Impl {
    Fd fd;
    Lock send_lock;
    Lock recv_lock;
    bool send_broken = false;
    // Receive side: buffered bytes [rpos, rlen) of rbuf.
    std::string rbuf;
    std::size_t rpos = 0, rlen = 0;
    // A large message being read directly: `body` has its full size, `have` bytes filled.
    bool in_body = false;
    std::string body;
    std::size_t have = 0;
    bool eof = false;
    std::string corrupt;  // set once the stream cannot be parsed: every recv throws this

    int check_open(const char* op) const {
        if (!fd.valid())
            throw std::system_error(EBADF, std::generic_category(),
                                    std::string("cogent: ") + op + " on a closed Pipe");
        return fd.get();
    }
    [[noreturn]] void set_corrupt(std::string why) {
        corrupt = "cogent: Pipe::recv(): " + why;
        throw std::system_error(EPROTO, std::generic_category(), corrupt);
    }
    // Read what is available into [dst, dst + n): bytes read, 0 at end of stream; parks while
    // nothing is there.
    std::size_t read_some(char* dst, std::size_t n, IoDeadline& deadline, TimeoutArg timeout) {
        const int f = check_open("Pipe::recv()");
        const IoResult r = retry_io(
            [&]() -> ssize_t {
                ssize_t k = ::recv(check_open("Pipe::recv()"), dst, n, MSG_DONTWAIT);
                // The peer closed with bytes it had not read yet: for us that is its end of
                // stream.
                if (k < 0 && errno == ECONNRESET) return 0;
                return k;
            },
            f, READ, deadline, "Pipe::recv()");
        if (r.n < 0) fail_io(r, "Pipe::recv()", f, timeout);
        return std::size_t(r.n);
    }
};

Pipe::Pipe() noexcept = default;
Pipe::Pipe(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Pipe::Pipe(Pipe&&) noexcept = default;
Pipe& Pipe::operator=(Pipe&& o) noexcept {
    if (this != &o) {
        close();
        impl_ = std::move(o.impl_);
    }
    return *this;
}
Pipe::~Pipe() = default;  // ~Impl closes the fd through Fd

std::pair<Pipe, Pipe> Pipe::create() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::system_error(errno, std::generic_category(), "cogent: Pipe::create()");
    Fd a(sv[0]), b(sv[1]);
    auto ia = std::make_unique<Impl>();
    auto ib = std::make_unique<Impl>();
    ia->fd = std::move(a);
    ib->fd = std::move(b);
    return {Pipe(std::move(ia)), Pipe(std::move(ib))};
}

void Pipe::close() noexcept {
    if (impl_) impl_->fd.close();
}

bool Pipe::is_open() const noexcept { return impl_ && impl_->fd.valid(); }

int Pipe::fileno() const noexcept { return impl_ ? impl_->fd.get() : -1; }

void Pipe::send(std::string_view message, TimeoutArg timeout) {
    if (!impl_)
        throw std::system_error(EBADF, std::generic_category(),
                                "cogent: Pipe::send() on a closed Pipe");
    Impl& im = *impl_;
    im.check_open("Pipe::send()");
    if (message.size() > max_message)
        throw std::length_error(
            "cogent: Pipe::send(): a message of " + std::to_string(message.size()) +
            " bytes exceeds Pipe::max_message (" + std::to_string(max_message) + " bytes)");
    IoDeadline deadline(timeout);
    if (!im.send_lock.acquire(true, deadline.left()))
        fail_timeout("Pipe::send()", im.fd.get(), timeout);
    std::lock_guard<Lock> held(im.send_lock, std::adopt_lock);
    int f = im.check_open("Pipe::send()");
    if (im.send_broken)
        throw std::system_error(EPIPE, std::generic_category(),
                                "cogent: Pipe::send(): an earlier send was interrupted in the "
                                "middle of a message; this end can no longer send");
    unsigned char hdr[kHeader];
    std::memcpy(hdr, kMagic, 4);
    const auto len = std::uint32_t(message.size());
    hdr[4] = std::uint8_t(len >> 24);
    hdr[5] = std::uint8_t(len >> 16);
    hdr[6] = std::uint8_t(len >> 8);
    hdr[7] = std::uint8_t(len);
    const std::size_t total = kHeader + message.size();
    std::size_t sent = 0;
    try {
        const IoResult r = retry_io(
            [&]() -> ssize_t {
                while (sent < total) {
                    iovec iov[2];
                    int cnt = 0;
                    if (sent < kHeader) iov[cnt++] = {hdr + sent, kHeader - sent};
                    std::size_t body_off = sent > kHeader ? sent - kHeader : 0;
                    if (body_off < message.size())
                        iov[cnt++] = {const_cast<char*>(message.data()) + body_off,
                                      message.size() - body_off};
                    msghdr mh{};
                    mh.msg_iov = iov;
                    mh.msg_iovlen = std::size_t(cnt);
                    ssize_t k = ::sendmsg(f, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                    if (k < 0) return -1;
                    sent += std::size_t(k);
                }
                return 0;
            },
            f, WRITE, deadline, "Pipe::send()");
        if (r.n < 0) {
            if (r.err == EPIPE || r.err == ECONNRESET)
                fail(EPIPE, "Pipe::send()", f, "the other end is closed");
            fail_io(r, "Pipe::send()", f, timeout);
        }
    } catch (...) {
        if (sent > 0 && sent < total) im.send_broken = true;
        throw;
    }
}

std::optional<std::string> Pipe::recv(TimeoutArg timeout) {
    if (!impl_)
        throw std::system_error(EBADF, std::generic_category(),
                                "cogent: Pipe::recv() on a closed Pipe");
    Impl& im = *impl_;
    im.check_open("Pipe::recv()");
    IoDeadline deadline(timeout);
    if (!im.recv_lock.acquire(true, deadline.left()))
        fail_timeout("Pipe::recv()", im.fd.get(), timeout);
    std::lock_guard<Lock> held(im.recv_lock, std::adopt_lock);
    im.check_open("Pipe::recv()");
    if (!im.corrupt.empty()) throw std::system_error(EPROTO, std::generic_category(), im.corrupt);

    for (;;) {
        if (im.in_body) {
            if (im.have == im.body.size()) {
                im.in_body = false;
                im.have = 0;
                return std::optional<std::string>(std::move(im.body));
            }
            std::size_t r =
                im.read_some(im.body.data() + im.have, im.body.size() - im.have, deadline, timeout);
            if (r == 0)
                im.set_corrupt("the stream ended inside a message (" + std::to_string(im.have) +
                               " of " + std::to_string(im.body.size()) + " bytes received)");
            im.have += r;
            continue;
        }
        std::size_t avail = im.rlen - im.rpos;
        std::size_t need = kHeader;
        if (avail >= kHeader) {
            const auto* h = reinterpret_cast<const unsigned char*>(im.rbuf.data() + im.rpos);
            if (std::memcmp(h, kMagic, 4) != 0)
                im.set_corrupt(
                    "corrupt message header (bad magic bytes): the stream is not "
                    "a Pipe's, or it lost bytes");
            const std::size_t len = (std::size_t(h[4]) << 24) | (std::size_t(h[5]) << 16) |
                                    (std::size_t(h[6]) << 8) | std::size_t(h[7]);
            if (len > max_message)
                im.set_corrupt("corrupt message header: length " + std::to_string(len) +
                               " exceeds Pipe::max_message (" + std::to_string(max_message) +
                               " bytes)");
            if (avail >= kHeader + len) {
                std::string msg(im.rbuf.data() + im.rpos + kHeader, len);
                im.rpos += kHeader + len;
                if (im.rpos == im.rlen) im.rpos = im.rlen = 0;
                return msg;
            }
            if (len > kBufferChunk) {
                // Large: move what we have into the message itself and read the rest there.
                im.body.assign(len, '\0');
                im.have = avail - kHeader;
                std::memcpy(im.body.data(), im.rbuf.data() + im.rpos + kHeader, im.have);
                im.rpos = im.rlen = 0;
                im.in_body = true;
                continue;
            }
            need = kHeader + len;
        }
        if (im.eof) {
            if (avail == 0) return std::nullopt;
            im.set_corrupt("the stream ended inside a message (" + std::to_string(avail) +
                           " bytes of an incomplete message received)");
        }
        // Make room for `need` bytes from rpos, reading as much as fits.
        if (im.rbuf.size() - im.rpos < std::max(need, kBufferChunk)) {
            if (im.rpos > 0) {
                std::memmove(im.rbuf.data(), im.rbuf.data() + im.rpos, avail);
                im.rlen = avail;
                im.rpos = 0;
            }
            if (im.rbuf.size() < std::max(need, kBufferChunk))
                im.rbuf.resize(std::max(need, kBufferChunk));
        }
        std::size_t r =
            im.read_some(im.rbuf.data() + im.rlen, im.rbuf.size() - im.rlen, deadline, timeout);
        if (r == 0)
            im.eof = true;
        else
            im.rlen += r;
    }
}

}  // namespace cogent
