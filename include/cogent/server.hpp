// Servers (gevent.server): StreamServer runs a handler in a new greenlet for every accepted
// connection; DatagramServer runs one for every datagram received.
//
// A StreamServer in three lines:
//
//     cogent::StreamServer server(cogent::Address("127.0.0.1", 8080),
//                                 [](cogent::Socket& sock, const cogent::Address& peer) {...});
//     server.serve_forever();  // until server.stop() (from any greenlet or thread)
//
// The handler's socket is closed when the handler returns or throws. An exception escaping the
// handler is reported on stderr (with the server's and the peer's address) and the server goes
// on serving, as in gevent; only a kill (GreenletExit) ends a handler silently.
//
// Multi-core: ServerOptions{.threads = N} serves from N OS threads, each with its own hub, its
// own listener and its own handler greenlets; the kernel spreads incoming connections over the
// listeners (SO_REUSEPORT, so an IP address is required; with port 0 the first listener picks
// the port and the others bind the same one). A Unix-domain or adopted listener is shared
// instead: each thread accepts from a dup() of it. The calling thread is one of the N (its
// listener is served while the caller's greenlets wait, e.g. in serve_forever()); the others
// are started by start() and ended by stop(). The handler is then called concurrently from N
// threads: anything it shares must be thread-safe (std::mutex, atomics), and a greenlet
// primitive (Event, Queue, Pool...) must not be shared between threads. A connection's socket
// and greenlet stay on the thread that accepted it.
//
//     cogent::StreamServer server(addr, handler, cogent::ServerOptions{.threads = 4});
//     server.serve_forever();  // stop() from a signal-handling thread, a handler, anywhere
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include "cogent/detail/export.hpp"
#include "cogent/socket.hpp"
#include "cogent/time.hpp"

namespace cogent {

class Pool;

namespace detail {
struct ServerState;
}

// Settings shared by StreamServer and DatagramServer (aggregate: use designated initializers,
// e.g. ServerOptions{.reuse_port = true, .threads = 4}).
struct COGENT_API ServerOptions {
    // listen(2) backlog of each listener (StreamServer); must be positive. gevent uses 256;
    // a larger default absorbs bursts of thousands of connects.
    int backlog = 1024;
    // SO_REUSEADDR on IP listeners (on by default, as in gevent).
    bool reuse_addr = true;
    // SO_REUSEPORT on IP listeners: other sockets (other processes, other servers) may bind the
    // same address and port and share the incoming connections. Implied by threads > 1.
    bool reuse_port = false;
    // StreamServer: at most this many connections handled at once per thread (0: unbounded);
    // further connections wait in the listen queue until a handler returns (gevent's
    // spawn=size). DatagramServer: at most this many handler greenlets at once (0: unbounded);
    // further datagrams wait in the socket's receive buffer.
    std::size_t max_connections = 0;
    // StreamServer: OS threads serving (see the header comment); must be at least 1.
    // DatagramServer: must be 1.
    unsigned threads = 1;
    // How long serve_forever() lets handlers finish when it is killed (gevent's stop_timeout).
    TimeoutArg stop_timeout = std::chrono::seconds(1);
    // Stack size of the handler greenlets (0: the default, see COGENT_STACK_SIZE).
    std::size_t stack_size = 0;
};

// A TCP or Unix-domain stream server (gevent.server.StreamServer). Not copyable or movable.
//
// Threads: start() and serve_forever() belong to one thread (the owner: the one that called
// start()), and so does destruction. stop(), address(), started() and closed() may be called
// from any thread. Handlers run on the thread that accepted their connection.
class COGENT_API StreamServer {
public:
    // Called in a new greenlet for each connection with the connected socket (closed when the
    // handler returns) and the peer's address. With threads > 1 it is invoked concurrently
    // from several threads.
    using Handler = std::function<void(Socket& socket, const Address& peer)>;
    using Options = ServerOptions;

    // A server that will listen on `listen` (IPv4, IPv6 or Unix path; port 0 lets the OS pick)
    // with at most max_connections handlers at once (0: unbounded). Nothing is bound before
    // start(). std::invalid_argument for an empty address or a null handler.
    StreamServer(Address listen, Handler handler, std::size_t max_connections = 0);
    // Same, with options. std::invalid_argument also for threads == 0 or backlog <= 0.
    StreamServer(Address listen, Handler handler, ServerOptions options);
    // Handlers are spawned in `pool` (gevent's spawn=pool), which must outlive the server and
    // belong to the owner thread: the accept loop waits while the pool is full. Other
    // greenlets of the pool are left alone by stop(). std::invalid_argument as above, and for
    // options.threads > 1 or options.max_connections != 0 (the pool is the limit).
    StreamServer(Address listen, Handler handler, Pool& pool, ServerOptions options = {});
    // Serve an already bound and listening stream socket (taken over; closed by stop()).
    // std::invalid_argument when it is not an open, listening SOCK_STREAM socket, and as above.
    StreamServer(Socket listener, Handler handler, ServerOptions options = {});
    // Same, spawning handlers in `pool`.
    StreamServer(Socket listener, Handler handler, Pool& pool, ServerOptions options = {});
    StreamServer(const StreamServer&) = delete;
    StreamServer& operator=(const StreamServer&) = delete;
    // Stops a running server (stop(0): handlers are killed). Call on the owner thread.
    ~StreamServer();

    // Bind and listen (unless given a listening socket), then accept in a background greenlet
    // (and start the other threads); returns at once. After a stop() it binds again, to the
    // same address (the same port, when the first start picked one). Throws std::system_error
    // when a listener cannot be set up (EADDRINUSE...; nothing is left open), std::logic_error
    // when already started, and what spawning a thread throws.
    void start();
    // start() unless started, then block the calling greenlet until the server is stopped (by
    // stop() from anywhere). If the caller is killed meanwhile, the server is stopped with
    // options.stop_timeout and the kill is rethrown. Call from the owner thread.
    void serve_forever();
    // Stop accepting and close the listeners (new connects are refused), wait up to `timeout`
    // for the running handlers to return, then kill the rest (waiting up to a second more for
    // them to unwind); on every thread. Returns once stopped. Called from one of this server's
    // own handlers (on any of its threads) or from a hub callback, it only begins the stop (it
    // cannot wait for itself) and returns at once. From another thread, the owner thread does
    // the work (its hub must run: e.g. it sits in serve_forever()) while the caller waits
    // cooperatively. A no-op when not started (a given listener is closed, as in gevent).
    // Throws std::invalid_argument for a negative timeout, and what kill/Timeout raise.
    void stop(TimeoutArg timeout = std::chrono::seconds(1));
    // Stop accepting new connections without closing anything (gevent's stop_accepting): the
    // listener stays open, so clients still connect into the kernel's listen queue (up to the
    // backlog) but nobody accepts them until start_accepting(); connections already accepted
    // are served as usual, and started() stays true. Stays paused until start_accepting() (a
    // handler returning does not resume it). A no-op unless started. Any thread: returns once
    // every serving thread has stopped accepting (the other threads' hubs do it, so the
    // owner's hub must run, as for stop(); the caller waits cooperatively). Called from a hub
    // callback it does not wait: the owner thread's listener is paused at once, the other
    // threads follow. Throws std::bad_alloc, and what kill/Timeout raise while it waits.
    void stop_accepting();
    // Accept again after stop_accepting(); connections that waited in the listen queue are
    // accepted then. A no-op unless started, or when accepting already. Any thread; waits as
    // stop_accepting does.
    void start_accepting();

    // The address served: after start(), the bound one (the real port when 0 was asked for);
    // before, the one given. Any thread.
    Address address() const;
    // True from start() until stop() begins (gevent: started). Any thread.
    bool started() const noexcept;
    // True when the server has no open listener: before start() (unless given a socket) and
    // from stop() on (gevent: closed). Any thread.
    bool closed() const noexcept;

private:
    std::shared_ptr<detail::ServerState> st_;
};

// A UDP or Unix datagram server (gevent.server.DatagramServer): the handler runs in a new
// greenlet for each datagram received, with its bytes (valid until the handler returns), the
// sender's address and the server (for sendto). One thread; not copyable or movable. Same
// threading rules as StreamServer (stop() from any thread).
class COGENT_API DatagramServer {
public:
    // The handler; an exception escaping it is reported on stderr and the server goes on.
    using Handler =
        std::function<void(std::string_view data, const Address& from, DatagramServer& server)>;
    using Options = ServerOptions;

    // A server that will bind `listen` (port 0: the OS picks) on start(). std::invalid_argument
    // for an empty address, a null handler, or options.threads != 1.
    DatagramServer(Address listen, Handler handler, ServerOptions options = {});
    // Serve an already bound SOCK_DGRAM socket (taken over). std::invalid_argument when it is
    // not an open, bound datagram socket, and as above.
    DatagramServer(Socket socket, Handler handler, ServerOptions options = {});
    DatagramServer(const DatagramServer&) = delete;
    DatagramServer& operator=(const DatagramServer&) = delete;
    // Stops a running server (handlers are killed). Call on the owner thread.
    ~DatagramServer();

    // Bind (unless given a socket) and receive in a background greenlet; returns at once.
    // Throws as StreamServer::start.
    void start();
    // As StreamServer::serve_forever.
    void serve_forever();
    // Close the socket, wait up to `timeout` for running handlers, kill the rest. As
    // StreamServer::stop.
    void stop(TimeoutArg timeout = std::chrono::seconds(1));
    // Stop reading datagrams (they wait in the socket's receive buffer, or are dropped when it
    // is full) without closing the socket; as StreamServer::stop_accepting.
    void stop_accepting();
    // Read datagrams again; as StreamServer::start_accepting.
    void start_accepting();
    // Send a datagram from the server's socket (a reply), waiting cooperatively if the socket
    // buffer is full; returns the bytes sent. Call from the owner thread while started:
    // std::logic_error otherwise; std::system_error when sendto(2) fails.
    std::size_t sendto(std::string_view data, const Address& to);

    // As StreamServer.
    Address address() const;
    bool started() const noexcept;
    bool closed() const noexcept;

private:
    std::shared_ptr<detail::ServerState> st_;
};

}  // namespace cogent
