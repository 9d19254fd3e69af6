// Pipes: cooperative reads and writes on any non-blocking fd (gevent.os.nb_read / nb_write),
// os.pipe() with owning fds, and Pipe, a duplex channel of length-prefixed byte messages
// between a parent and a forked child.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

// An owned file descriptor: closed (through cogent::close, which first wakes any greenlet
// waiting on it with EBADF) when destroyed or reassigned. Move-only.
class COGENT_API Fd {
public:
    // No fd (get() == -1).
    Fd() noexcept = default;
    // Take ownership of fd (may be -1).
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    // Closes what this held, then takes o's fd.
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { close(); }

    // The fd, or -1.
    int get() const noexcept { return fd_; }
    // gevent/Python spelling of get().
    int fileno() const noexcept { return fd_; }
    // True while an fd is held.
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    // Give up ownership without closing; returns the fd (or -1).
    int release() noexcept {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }
    // cogent::close the fd (waiters wake with EBADF); idempotent. Errors of close(2) are
    // ignored (the fd is gone either way).
    void close() noexcept;

private:
    int fd_ = -1;
};

// pipe2(2) with O_NONBLOCK | O_CLOEXEC: {read end, write end}. std::system_error on failure
// (EMFILE...). Any thread may call it.
COGENT_API std::pair<Fd, Fd> pipe();

// Set O_NONBLOCK on fd (gevent's make_nonblocking); true if it was not set before.
// std::system_error (EBADF...) on failure.
COGENT_API bool set_nonblocking(int fd);

// Read up to n bytes from fd, waiting cooperatively until some are available; returns how many
// were read, 0 at end of file (or for n == 0). fd must be O_NONBLOCK (pipe() and Pipe fds are):
// on a blocking fd the read itself would block the whole thread. Timeout absent: wait as long
// as it takes; zero: never wait (std::system_error EAGAIN when nothing is there); positive:
// std::system_error ETIMEDOUT when nothing arrived in time. Other errors: std::system_error
// with errno and the fd in the message (EBADF also when fd is closed through cogent::close
// while waiting). A second greenlet reading the same fd while one waits:
// ConcurrentObjectUseError. Kill and Timeout interrupt the wait; no data is lost by that.
// Call from a greenlet of the thread that owns the fd's waits, not from the hub.
COGENT_API std::size_t read(int fd, void* buf, std::size_t n, TimeoutArg timeout = {});
// Write up to n bytes to fd, waiting until at least one byte can be written; returns how many
// were written. As read() for O_NONBLOCK, timeouts, errors and callers; EPIPE when the reading
// end is closed (SIGPIPE is raised as by write(2) unless ignored: use Pipe, or MSG_NOSIGNAL
// sockets, where that matters).
COGENT_API std::size_t write(int fd, const void* buf, std::size_t n, TimeoutArg timeout = {});
// Write all n bytes, waiting as often as needed. The timeout bounds the whole call; when it
// expires (ETIMEDOUT/EAGAIN) or an error, kill or Timeout interrupts it, some prefix of the
// data may already have been written.
COGENT_API void write_all(int fd, const void* buf, std::size_t n, TimeoutArg timeout = {});
// write_all of a string.
inline void write_all(int fd, std::string_view data, TimeoutArg timeout = {}) {
    write_all(fd, data.data(), data.size(), timeout);
}

// One end of a duplex message channel over a Unix stream socket pair, for a parent and a
// forked child (or two greenlets or threads). Each send() is received whole by one recv(), in
// order; messages may be empty and up to max_message bytes. Wire format per message: the 4
// bytes "CGP1", a 4-byte big-endian length, the bytes; a header that does not match is
// reported as corruption instead of being trusted.
// Several greenlets may send (or receive) on one end at once: they take turns, whole messages.
// Both ends are O_NONBLOCK and close-on-exec (they survive fork, not exec). After fork, close
// the end you do not use in each process, so that the other side sees end of stream when its
// peer exits. Sends never raise SIGPIPE. Use an end from one thread at a time.
class COGENT_API Pipe {
public:
    // The largest message send() accepts and recv() trusts: 1 GiB.
    static constexpr std::size_t max_message = std::size_t(1) << 30;

    // Two connected ends. std::system_error on failure (EMFILE...).
    static std::pair<Pipe, Pipe> create();

    // A closed end (is_open() false).
    Pipe() noexcept;
    Pipe(Pipe&&) noexcept;
    // Closes this end first.
    Pipe& operator=(Pipe&&) noexcept;
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    // Closes this end.
    ~Pipe();

    // Send one message, waiting cooperatively while the socket buffer is full. The timeout
    // bounds the whole send (as read() describes: EAGAIN for zero, ETIMEDOUT). Throws
    // std::length_error above max_message; std::system_error EPIPE when the peer end is closed
    // (its process died), EBADF on a closed end. If a send is interrupted (timeout, kill,
    // Timeout) after part of its message went out, the stream cannot be resynchronised: this
    // end's sending side is then broken, and later sends throw std::system_error EPIPE saying
    // so (the peer sees a truncated message and an error once this end closes).
    void send(std::string_view message, TimeoutArg timeout = {});
    // Receive the next message, waiting cooperatively. std::nullopt at end of stream: the peer
    // closed its end (or its process exited) between two messages; every later recv returns
    // std::nullopt too. Timeout as read() (EAGAIN for zero, ETIMEDOUT); the bytes of a message
    // partly received stay buffered for the next call, so a timeout loses nothing. Throws
    // std::system_error EPROTO for a corrupt header or a stream that ends inside a message,
    // and from then on for every recv; EBADF on a closed end or when it is closed meanwhile.
    std::optional<std::string> recv(TimeoutArg timeout = {});
    // Close this end (waking greenlets waiting on it with EBADF). Idempotent.
    void close() noexcept;
    // True until close().
    bool is_open() const noexcept;
    // The socket fd, or -1.
    int fileno() const noexcept;

private:
    struct Impl;
    explicit Pipe(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogent
