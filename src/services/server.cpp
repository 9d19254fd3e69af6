// StreamServer and DatagramServer (server.hpp).
//
// Shape: a server's state (ServerState) outlives the server object while a stop is under way.
// Each start() creates a Run: one Worker per thread, each with its own socket, its serving
// greenlet (the accept or receive loop), the group of its handler greenlets and, for
// max_connections, its own Pool. Worker 0 lives on the owner thread (the one that called
// start()); the others each on a std::thread with its own hub. stop() always runs on the owner
// thread, in a dedicated "stopper" greenlet (so that a caller that is killed, or a handler that
// cannot wait for itself, never leaves a half-stopped server): it asks every other thread to
// stop through Hub::run_callback_threadsafe, stops worker 0, then waits for the threads.
#include "cogent/server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "cogent/async_result.hpp"
#include "cogent/event.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/hub.hpp"
#include "cogent/lock.hpp"
#include "cogent/pool.hpp"
#include "cogent/util.hpp"
#include "core/thread_state.hpp"
#include "hub/hub.hpp"

namespace cogent::detail {

namespace {

enum Phase : int { kIdle, kRunning, kStopping, kStopped };

constexpr Duration kMinDelay = std::chrono::milliseconds(10);  // gevent's min_delay
constexpr Duration kMaxDelay = std::chrono::seconds(1);        // gevent's max_delay
constexpr std::size_t kMaxDatagram = 65536;

// Holds a reference on the hub's loop: a stop may come from another thread, which the loop
// cannot see (the async watcher is unreferenced), so waiting for it must not raise LoopExit.
struct LoopHold {
    HubImpl* hub;
    explicit LoopHold(HubImpl* h) : hub(h) { hub->keep_alive(1); }
    ~LoopHold() { hub->keep_alive(-1); }
    LoopHold(const LoopHold&) = delete;
};

// A server's report: through the error handler (cogent/util.hpp), with the exception being
// handled if there is one.
void say(const std::string& msg) noexcept {
    const std::exception_ptr e = std::current_exception();
    try {
        std::string line = "cogent: " + msg;
        report_error(ErrorKind::callback, msg, e, line);
    } catch (...) {
        report_error(ErrorKind::callback, "a server", e,
                     "cogent: a server error (and no memory to describe it)");
    }
}

int error_code(const std::system_error& e) noexcept { return e.code().value(); }

// An error's text without its own "cogent: " prefix, to go inside a line that say() prefixes.
std::string detail_of(const std::exception& e) {
    std::string_view w = e.what();
    constexpr std::string_view kPrefix = "cogent: ";
    if (w.substr(0, kPrefix.size()) == kPrefix) w.remove_prefix(kPrefix.size());
    return std::string(w);
}

// A pending network error of the new connection, or an interrupted call: retry at once.
bool transient_error(int e) noexcept {
    switch (e) {
        case EINTR:
        case EAGAIN:
        case ECONNABORTED:
        case ECONNREFUSED:  // an ICMP error of an earlier datagram
        case ECONNRESET:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
        case EPERM:  // refused by a firewall rule
        case ETIMEDOUT:
            return true;
        default:
            return false;
    }
}

// The socket itself is unusable (gevent's fatal_errors): stop serving it.
bool fatal_error(int e) noexcept { return e == EBADF || e == EINVAL || e == ENOTSOCK; }

}  // namespace

// What handler greenlets share; no path back to the server state (no reference cycle).
struct HandlerInfo {
    StreamServer::Handler stream;
    DatagramServer::Handler dgram;
    DatagramServer* dserver = nullptr;
    std::string name;  // "StreamServer(127.0.0.1:8080)", for messages
};

struct Run;
struct ServerState;

// One thread's share of a run.
struct Worker {
    ServerState* st = nullptr;
    Run* run = nullptr;
    std::size_t index = 0;
    Socket sock;            // the listener (stream) or the datagram socket
    std::string unix_path;  // a path this worker bound: unlinked when closed
    dev_t unix_dev = 0;
    ino_t unix_ino = 0;
    AnyGreenlet loop;  // the accept / receive loop (invalid while paused)
    struct Retired {
        AnyGreenlet loop;
        bool killed;  // else it leaves by itself once its hand-off is done
    };
    std::vector<Retired> retired;  // loops told to leave by stop_accepting(), not yet dead
    std::uint64_t gen = 0;         // a loop started at another generation leaves
    bool handing_off = false;      // the loop is passing a connection to its handler
    std::unique_ptr<Group> group;  // this worker's handler greenlets (a Pool for a limit)
    Pool* slots = nullptr;         // the pool whose slots the loop waits for, if any
    Pool* user_pool = nullptr;     // handlers are spawned in it (then also added to group)
    SpawnOptions spawn_opts;
    std::unique_ptr<Lock> send_lock;  // DatagramServer::sendto when the socket buffer is full

    // Threads other than the owner's.
    std::thread thread;
    std::unique_ptr<AsyncResult<void>> done;  // the owner's; set by the thread when it ended
    HubImpl* hub = nullptr;                   // st->mu: while the thread's hub takes stop requests
    Event* stop_ev = nullptr;                 // st->mu: same lifetime

    ~Worker();
};

struct Run {
    HubImpl* owner = nullptr;
    std::unique_ptr<Event> stopped;  // set when the stop is complete (owner thread)
    AnyGreenlet stopper;
    std::shared_ptr<const HandlerInfo> info;
    // st->mu:
    bool stop_requested = false;
    bool accepting = true;  // stop_accepting() / start_accepting()
    TimeoutArg stop_timeout{};
    // Last, so that it is destroyed first: ~Worker may still look at the fields above.
    std::vector<std::unique_ptr<Worker>> workers;
};

struct ServerState {
    bool stream = true;
    HandlerInfo handlers;  // the user's handler; copied into each run's HandlerInfo
    ServerOptions opt;
    Pool* user_pool = nullptr;
    std::atomic<int> phase{kIdle};
    std::atomic<int> open_sockets{0};
    mutable std::mutex mu;
    Address address;           // mu
    Socket given;              // mu: an adopted socket, until the first start()
    std::shared_ptr<Run> run;  // mu for the pointer; the Run's contents: see Run
    std::vector<AsyncResult<void>*> foreign_waiters;  // mu: stop() callers on other threads

    const char* kind() const noexcept { return stream ? "StreamServer" : "DatagramServer"; }
    std::string describe() const {
        std::lock_guard<std::mutex> lk(mu);
        return std::string(kind()) + "(" + address.to_string() + ")";
    }
};

namespace {

thread_local ServerState* tls_serving = nullptr;  // set on a server's worker threads

void close_socket(Worker& w) noexcept {
    if (!w.sock.is_open()) return;
    w.sock.close();
    w.st->open_sockets.fetch_sub(1);
    if (!w.unix_path.empty()) {
        // Remove the path only if it is still the socket we bound (not a newer one).
        struct stat sb {};
        if (::lstat(w.unix_path.c_str(), &sb) == 0 && S_ISSOCK(sb.st_mode) &&
            sb.st_dev == w.unix_dev && sb.st_ino == w.unix_ino)
            ::unlink(w.unix_path.c_str());
        w.unix_path.clear();
    }
}

void report_handler_failure(const HandlerInfo& info, const Address& peer,
                            std::exception_ptr e) noexcept {
    try {
        say(info.name + ": the handler for " + peer.to_string() + " failed with " +
            describe_exception(e));
    } catch (...) {
        say("a server handler failed");
    }
}

void run_stream_handler(const HandlerInfo& info, Socket& sock, const Address& peer) {
    try {
        info.stream(sock, peer);
    } catch (const GreenletExit&) {
        throw;  // a kill (stop()) ends the handler silently; the socket closes as it unwinds
    } catch (...) {
        report_handler_failure(info, peer, std::current_exception());
    }
    sock.close();
}

void run_dgram_handler(const HandlerInfo& info, const std::string& data, const Address& from) {
    try {
        info.dgram(data, from, *info.dserver);
    } catch (const GreenletExit&) {
        throw;
    } catch (...) {
        report_handler_failure(info, from, std::current_exception());
    }
}

// Start fn in a handler greenlet of w: in the user's pool (waiting for a slot), in w's own
// pool, or unbounded.
template <class F>
void spawn_handler(Worker& w, F&& fn) {
    if (!w.user_pool) {
        w.group->spawn(w.spawn_opts, std::forward<F>(fn));
        return;
    }
    auto g = make_greenlet(w.spawn_opts, std::forward<F>(fn));
    w.user_pool->add(g);
    w.group->add(g);
    g.start();
}

// Error handling shared by both loops: true to go on, false when the socket is unusable.
class Backoff {
public:
    Backoff(Worker& w, const char* op) : w_(w), op_(op) {}
    bool failed(const std::system_error& e) {
        const int code = error_code(e);
        if (transient_error(code)) return true;
        if (fatal_error(code)) {
            say(w_.run->info->name + ": " + op_ + " failed (" + detail_of(e) +
                "); closing the socket (no longer serving on it)");
            close_socket(w_);
            return false;
        }
        // EMFILE, ENFILE, ENOBUFS, ENOMEM...: retrying at once would spin (the listener stays
        // readable); wait, longer each time, and say so once per streak.
        delay_ = delay_ == Duration::zero() ? kMinDelay : std::min(delay_ * 2, kMaxDelay);
        if (failures_++ == 0)
            say(w_.run->info->name + ": " + op_ + " failed (" + detail_of(e) +
                "); retrying with a growing delay (10 ms up to 1 s) until it succeeds");
        cogent::sleep(delay_);
        return true;
    }
    void succeeded() {
        if (failures_ == 0) return;
        say(w_.run->info->name + ": " + op_ + " works again after " + std::to_string(failures_) +
            " failed attempt" + (failures_ == 1 ? "" : "s"));
        failures_ = 0;
        delay_ = Duration::zero();
    }

private:
    Worker& w_;
    std::string op_;
    Duration delay_{};
    unsigned long failures_ = 0;
};

// Marks the loop as handing a connection (or datagram) over: stop_accepting() then lets it
// finish instead of killing it, which would drop what it holds.
struct HandOff {
    Worker& w;
    explicit HandOff(Worker& wk) : w(wk) { w.handing_off = true; }
    ~HandOff() { w.handing_off = false; }
    HandOff(const HandOff&) = delete;
};

// A new loop first waits for the loops killed by stop_accepting() to be gone: two greenlets
// must not wait on one socket (ConcurrentObjectUseError), and a kill lands on the next turn.
void wait_for_killed_loops(Worker& w) {
    std::vector<AnyGreenlet> killed;
    for (auto& r : w.retired)
        if (r.killed && !r.loop.dead()) killed.push_back(r.loop);
    for (auto& g : killed) g.join();
}

void accept_loop(Worker& w, std::uint64_t gen) {
    wait_for_killed_loops(w);
    const std::shared_ptr<const HandlerInfo> info = w.run->info;
    Backoff backoff(w, "accept");
    // Accepts in a row before the handlers get a turn (gevent's max_accept is 100): one full
    // listen queue. The handlers' starts queue up meanwhile and all run in the hub's next
    // round, so a smaller number only slows accepting under load: with thousands of busy
    // connections a yield costs a whole I/O round, and the listen queue overflows (the kernel
    // drops the handshake; the client waits a second or more to retry).
    const int max_accept = std::max(w.st->opt.backlog, 100);
    int in_a_row = 0;
    while (w.gen == gen) {  // stop_accepting() moves gen on
        // At the limit, leave further connections in the listen queue (gevent stops accepting).
        if (w.slots && w.slots->full()) w.slots->wait_available();
        std::pair<Socket, Address> conn;
        try {
            conn = w.sock.accept();  // accepts while the queue has connections, else parks
        } catch (const std::system_error& e) {
            if (!backoff.failed(e)) return;
            continue;
        }
        backoff.succeeded();
        HandOff handing(w);
        spawn_handler(w, [info, sock = std::move(conn.first), peer = conn.second]() mutable {
            run_stream_handler(*info, sock, peer);
        });
        if (++in_a_row == max_accept) {
            in_a_row = 0;
            cogent::yield();  // a connect storm must not starve the handlers
        }
    }
}

void recv_loop(Worker& w, std::uint64_t gen) {
    wait_for_killed_loops(w);
    const std::shared_ptr<const HandlerInfo> info = w.run->info;
    Backoff backoff(w, "recvfrom");
    std::unique_ptr<char[]> buf(new char[kMaxDatagram]);
    while (w.gen == gen) {
        if (w.slots && w.slots->full()) w.slots->wait_available();
        std::pair<std::size_t, Address> got;
        try {
            got = w.sock.recvfrom(buf.get(), kMaxDatagram);
        } catch (const std::system_error& e) {
            if (!backoff.failed(e)) return;
            continue;
        }
        backoff.succeeded();
        HandOff handing(w);
        spawn_handler(w, [info, data = std::string(buf.get(), got.first), from = got.second]() {
            run_dgram_handler(*info, data, from);
        });
    }
}

void start_loop(Worker& w) {
    SpawnOptions so;
    so.name = std::string(w.st->kind()) + (w.st->stream ? " accept loop" : " receive loop");
    if (w.st->stream)
        w.loop = spawn(so, [&w, gen = w.gen] { accept_loop(w, gen); });
    else
        w.loop = spawn(so, [&w, gen = w.gen] { recv_loop(w, gen); });
}

// On w's thread (a greenlet or the hub): stop_accepting() for this worker. The loop leaves
// (killed where it waits; or, when handing a connection over, right after) and the socket
// stays open.
void pause_worker(Worker& w) {
    ++w.gen;
    if (w.loop.valid() && !w.loop.dead()) {
        const bool kill = !w.handing_off;
        if (kill) w.loop.kill(GreenletExit(), false);
        w.retired.push_back({std::move(w.loop), kill});
    }
    w.loop = AnyGreenlet();
    std::erase_if(w.retired, [](const Worker::Retired& r) { return r.loop.dead(); });
}

// On w's thread: start_accepting() for this worker.
void resume_worker(Worker& w) {
    if (w.loop.valid() && !w.loop.dead()) return;  // accepting already
    if (!w.sock.is_open()) return;                 // closed by a fatal error
    start_loop(w);
}

// On w's thread: make w accept or not, as its run now wants (unless it is being stopped).
void apply_accepting(Worker& w) {
    bool on;
    {
        std::lock_guard<std::mutex> lk(w.st->mu);
        if (w.run->stop_requested || w.st->phase.load() != kRunning) return;
        on = w.run->accepting;
    }
    if (on)
        resume_worker(w);
    else
        pause_worker(w);
}

// On w's thread: stop serving, give the handlers `timeout`, kill the rest.
void stop_worker(Worker& w, TimeoutArg timeout) {
    if (w.loop.valid() && !w.loop.dead()) w.loop.kill();
    std::vector<AnyGreenlet> retired;
    for (auto& r : w.retired) retired.push_back(r.loop);
    w.retired.clear();
    for (auto& g : retired)
        if (!g.dead()) g.kill();
    close_socket(w);
    if (w.group && !w.group->join(timeout))
        w.group->kill(GreenletExit(), true, std::chrono::seconds(1));
}

// Release the objects that belong to w's thread (on that thread).
void drop_thread_objects(Worker& w) noexcept {
    close_socket(w);
    w.loop = AnyGreenlet();
    w.retired.clear();
    w.group.reset();
    w.send_lock.reset();
}

// Ask worker w's thread to stop (st->mu held). A thread that has not registered yet sees
// run->stop_requested when it does.
void request_thread_stop(Worker* w) {
    if (!w->hub) return;
    Hub(w->hub).run_callback_threadsafe([w] {
        std::lock_guard<std::mutex> lk(w->st->mu);
        if (w->stop_ev) w->stop_ev->set();
    });
}

void prepare_worker(ServerState& st, Worker& w) {
    w.spawn_opts.stack_size = st.opt.stack_size;
    w.user_pool = st.user_pool;
    if (st.user_pool) {
        w.slots = st.user_pool;
        w.group = std::make_unique<Group>();
    } else if (st.opt.max_connections) {
        auto p = std::make_unique<Pool>(st.opt.max_connections);
        w.slots = p.get();
        w.group = std::move(p);
    } else {
        w.group = std::make_unique<Group>();
    }
    if (!st.stream) w.send_lock = std::make_unique<Lock>();
}

// A worker thread. It holds no reference on the state: the owner joins the thread before the
// state can go (in the stopper, or at the latest in ~Worker).
void thread_main(ServerState* stp, Worker* w) {
    ServerState& st = *stp;
    tls_serving = &st;
    Event stop_ev;
    try {
        HubImpl* hub = get_hub().impl();
        prepare_worker(st, *w);  // its group and pool belong to this thread
        bool accepting;
        {
            std::lock_guard<std::mutex> lk(st.mu);
            w->hub = hub;
            w->stop_ev = &stop_ev;
            if (w->run->stop_requested) stop_ev.set();
            accepting = w->run->accepting;
        }
        if (accepting) start_loop(*w);
        {
            LoopHold hold(hub);
            stop_ev.wait();
        }
        TimeoutArg timeout;
        {
            std::lock_guard<std::mutex> lk(st.mu);
            timeout = w->run->stop_timeout;
        }
        stop_worker(*w, timeout);
    } catch (...) {
        try {
            say(std::string(st.kind()) + " thread " + std::to_string(w->index) + " failed with " +
                describe_exception(std::current_exception()));
        } catch (...) {
        }
    }
    {
        std::lock_guard<std::mutex> lk(st.mu);
        w->hub = nullptr;
        w->stop_ev = nullptr;
    }
    drop_thread_objects(*w);
    w->done->set();
}

// The stopper greenlet's body (owner thread).
void do_stop(const std::shared_ptr<ServerState>& sp, const std::shared_ptr<Run>& run,
             TimeoutArg timeout) {
    ServerState& st = *sp;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        run->stop_requested = true;
        run->stop_timeout = timeout;
        for (std::size_t i = 1; i < run->workers.size(); ++i)
            request_thread_stop(run->workers[i].get());
    }
    std::exception_ptr err;
    try {
        stop_worker(*run->workers[0], timeout);
    } catch (...) {
        err = std::current_exception();  // killed: still wait for the threads below
    }
    for (std::size_t i = 1; i < run->workers.size(); ++i) {
        Worker& w = *run->workers[i];
        if (!w.thread.joinable()) continue;
        try {
            w.done->wait();
        } catch (...) {
            if (!err) err = std::current_exception();
        }
        w.thread.join();  // it has set `done`: it is only leaving
    }
    {
        std::lock_guard<std::mutex> lk(st.mu);
        st.phase.store(kStopped);
        for (AsyncResult<void>* fw : st.foreign_waiters) fw->set();
        st.foreign_waiters.clear();
    }
    run->stopped->set();
    if (err) std::rethrow_exception(err);
}

bool is_ip(int family) noexcept { return family == AF_INET || family == AF_INET6; }

Socket make_socket(const ServerState& st, const Address& addr, bool reuse_port) {
    Socket s(addr.family(), st.stream ? SOCK_STREAM : SOCK_DGRAM);
    if (is_ip(addr.family())) {
        if (st.opt.reuse_addr) s.set_option(SOL_SOCKET, SO_REUSEADDR, 1);
        if (reuse_port) s.set_option(SOL_SOCKET, SO_REUSEPORT, 1);
    }
    s.bind(addr);
    if (st.stream) s.listen(st.opt.backlog);
    return s;
}

void remember_unix_path(Worker& w, const Address& addr) {
    if (addr.family() != AF_UNIX) return;
    auto* un = reinterpret_cast<const sockaddr_un*>(addr.sockaddr_ptr());
    if (addr.length() <= offsetof(sockaddr_un, sun_path) || un->sun_path[0] == '\0') return;
    std::string path = addr.host();
    struct stat sb {};
    if (::lstat(path.c_str(), &sb) != 0) return;
    w.unix_path = std::move(path);
    w.unix_dev = sb.st_dev;
    w.unix_ino = sb.st_ino;
}

void check_options(const ServerState& st) {
    const char* k = st.kind();
    if (!(st.stream ? static_cast<bool>(st.handlers.stream) : static_cast<bool>(st.handlers.dgram)))
        throw std::invalid_argument(std::string("cogent: ") + k + ": the handler is empty");
    if (st.opt.threads == 0)
        throw std::invalid_argument(std::string("cogent: ") + k +
                                    ": threads must be at least 1 (got 0)");
    if (!st.stream && st.opt.threads != 1)
        throw std::invalid_argument("cogent: DatagramServer runs on one thread (threads = " +
                                    std::to_string(st.opt.threads) + ")");
    if (st.stream && st.opt.backlog <= 0)
        throw std::invalid_argument("cogent: StreamServer: backlog must be positive (got " +
                                    std::to_string(st.opt.backlog) + ")");
    if (st.user_pool && st.opt.threads != 1)
        throw std::invalid_argument(
            "cogent: StreamServer with a Pool runs on one thread (a Pool belongs to one thread); "
            "use max_connections for a per-thread limit");
    if (st.user_pool && st.opt.max_connections != 0)
        throw std::invalid_argument(
            "cogent: StreamServer with a Pool: the pool is the limit; max_connections must be 0");
}

void check_address(const ServerState& st, const Address& a) {
    const int f = a.family();
    if (f != AF_INET && f != AF_INET6 && f != AF_UNIX)
        throw std::invalid_argument(std::string("cogent: ") + st.kind() +
                                    " needs an IPv4, IPv6 or Unix-domain address (got " +
                                    a.to_string() + ")");
}

std::shared_ptr<ServerState> make_state(bool stream, ServerOptions opt, Pool* pool) {
    auto sp = std::make_shared<ServerState>();
    sp->stream = stream;
    sp->opt = std::move(opt);
    sp->user_pool = pool;
    return sp;
}

void init_address(ServerState& st, Address addr) {
    check_options(st);
    check_address(st, addr);
    st.address = std::move(addr);
}

void init_socket(ServerState& st, Socket sock) {
    check_options(st);
    const char* k = st.kind();
    if (!sock.is_open())
        throw std::invalid_argument(std::string("cogent: ") + k + ": the socket is not open");
    const int want = st.stream ? SOCK_STREAM : SOCK_DGRAM;
    if (sock.type() != want)
        throw std::invalid_argument(std::string("cogent: ") + k + " needs a " +
                                    (st.stream ? "SOCK_STREAM" : "SOCK_DGRAM") + " socket");
    Address local = sock.local_address();
    check_address(st, local);
    if (st.stream && sock.get_option(SOL_SOCKET, SO_ACCEPTCONN) == 0)
        throw std::invalid_argument("cogent: StreamServer: the socket " + local.to_string() +
                                    " is not listening (call listen() first, or pass an Address)");
    if (!st.stream && is_ip(local.family()) && local.port() == 0)
        throw std::invalid_argument("cogent: DatagramServer: the socket is not bound");
    st.address = local;
    st.given = std::move(sock);
    st.open_sockets.store(1);
}

// Build the run's sockets: bind (or take the given socket), share or SO_REUSEPORT for threads.
void open_sockets(ServerState& st, Run& run) {
    const unsigned n = st.opt.threads;
    Socket given;
    Address addr;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        given = std::move(st.given);
        addr = st.address;
    }
    const bool had_given = given.is_open();
    if (had_given) st.open_sockets.fetch_sub(1);  // recounted below, per worker
    const bool share = had_given || !is_ip(addr.family());
    for (unsigned i = 0; i < n; ++i) {
        auto w = std::make_unique<Worker>();
        w->st = &st;
        w->run = &run;
        w->index = i;
        if (i == 0) {
            if (had_given) {
                // NOLINTNEXTLINE(bugprone-use-after-move): moved only at i == 0
                w->sock = std::move(given);
            } else {
                w->sock = make_socket(st, addr, st.opt.reuse_port || n > 1);
                remember_unix_path(*w, addr);
                if (is_ip(addr.family())) addr = w->sock.local_address();  // the chosen port
            }
        } else if (share) {
            int fd = ::fcntl(run.workers[0]->sock.fileno(), F_DUPFD_CLOEXEC, 0);
            if (fd < 0)
                throw std::system_error(
                    errno, std::generic_category(),
                    "cogent: dup of the listener for thread " + std::to_string(i));
            try {
                w->sock = Socket::adopt(fd);
            } catch (...) {
                ::close(fd);
                throw;
            }
        } else {
            w->sock = make_socket(st, addr, true);
        }
        st.open_sockets.fetch_add(1);
        run.workers.push_back(std::move(w));
    }
    std::lock_guard<std::mutex> lk(st.mu);
    st.address = run.workers[0]->sock.local_address();
}

bool on_owner(const Run& run) noexcept {
    ThreadState* ts = tls_state;
    return ts && ts->hub == run.owner;
}

// Begin the stop on the owner thread (spawning the stopper) if it has not begun.
void begin_stop(const std::shared_ptr<ServerState>& sp, TimeoutArg timeout) {
    ServerState& st = *sp;
    int expected = kRunning;
    if (!st.phase.compare_exchange_strong(expected, kStopping)) return;
    std::shared_ptr<Run> run;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        run = st.run;
    }
    SpawnOptions so;
    so.name = std::string(st.kind()) + " stopper";
    run->stopper = spawn(so, [sp, run, timeout] { do_stop(sp, run, timeout); });
}

void start_server(const std::shared_ptr<ServerState>& sp) {
    ServerState& st = *sp;
    const int ph = st.phase.load();
    if (ph == kRunning || ph == kStopping)
        throw std::logic_error(std::string("cogent: ") + st.kind() + " " + st.describe() +
                               (ph == kRunning ? " is already started" : " is still stopping"));
    HubImpl* hub = get_hub().impl();
    auto run = std::make_shared<Run>();
    run->owner = hub;
    run->stopped = std::make_unique<Event>();
    try {
        open_sockets(st, *run);
    } catch (...) {
        for (auto& w : run->workers) close_socket(*w);
        throw;
    }
    auto info = std::make_shared<HandlerInfo>(st.handlers);
    info->name = st.describe();
    run->info = std::move(info);
    prepare_worker(st, *run->workers[0]);  // the others on their own thread
    for (std::size_t i = 1; i < run->workers.size(); ++i)
        run->workers[i]->done = std::make_unique<AsyncResult<void>>();
    {
        std::lock_guard<std::mutex> lk(st.mu);
        st.run = run;
        st.phase.store(kRunning);
    }
    start_loop(*run->workers[0]);
    std::exception_ptr err;
    try {
        for (std::size_t i = 1; i < run->workers.size(); ++i) {
            Worker* w = run->workers[i].get();
            w->thread = std::thread(thread_main, &st, w);
        }
    } catch (...) {
        err = std::current_exception();
    }
    if (err) {
        // Some threads could not start: undo the whole start, then report why.
        for (std::size_t i = 1; i < run->workers.size(); ++i)
            if (!run->workers[i]->thread.joinable()) {
                close_socket(*run->workers[i]);
                run->workers[i]->done->set();
            }
        begin_stop(sp, Duration::zero());
        run->stopped->wait();
        std::rethrow_exception(err);
    }
}

void stop_server(const std::shared_ptr<ServerState>& sp, TimeoutArg timeout) {
    ServerState& st = *sp;
    std::shared_ptr<Run> run;  // only on the owner thread: the Run is that thread's to destroy
    {
        std::lock_guard<std::mutex> lk(st.mu);
        const int ph = st.phase.load();
        if (ph == kIdle || ph == kStopped) {
            if (st.given.is_open()) {
                st.given.close();  // gevent: stop() closes the listener even if never started
                st.open_sockets.fetch_sub(1);
            }
            return;
        }
        if (on_owner(*st.run)) run = st.run;
    }
    if (!run) {
        // Another thread: the owner does the stop; wait for it unless this thread is one of the
        // server's own (a handler there would wait for its own thread to stop).
        std::unique_ptr<AsyncResult<void>> done;
        if (tls_serving != &st) done = std::make_unique<AsyncResult<void>>();
        {
            std::lock_guard<std::mutex> lk(st.mu);
            const int now = st.phase.load();
            if (now == kStopped || now == kIdle) return;
            if (done) st.foreign_waiters.push_back(done.get());
            Hub(st.run->owner).run_callback_threadsafe([sp, timeout] { begin_stop(sp, timeout); });
        }
        if (!done) return;
        struct Unregister {
            ServerState& st;
            AsyncResult<void>* r;
            ~Unregister() {
                std::lock_guard<std::mutex> lk(st.mu);
                auto& v = st.foreign_waiters;
                v.erase(std::remove(v.begin(), v.end(), r), v.end());
            }
        } unregister{st, done.get()};
        done->wait();
        return;
    }
    begin_stop(sp, timeout);
    // The hub cannot wait, and neither can a handler of this thread (the stop waits for it).
    ThreadState* ts = tls_state;
    if (ts->current == run->owner->greenlet) return;
    if (run->workers[0]->group && run->workers[0]->group->contains_current()) return;
    run->stopped->wait();
}

void serve_server(const std::shared_ptr<ServerState>& sp) {
    ServerState& st = *sp;
    const int ph = st.phase.load();
    if (ph == kIdle || ph == kStopped) start_server(sp);
    std::shared_ptr<Run> run;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        run = st.run;
    }
    if (!on_owner(*run))
        throw std::logic_error(std::string("cogent: ") + st.kind() +
                               "::serve_forever called from a thread other than the one that "
                               "started it");
    std::exception_ptr killed;
    {
        LoopHold hold(run->owner);
        try {
            run->stopped->wait();
        } catch (...) {
            killed = std::current_exception();
        }
    }
    if (killed) {
        // gevent: serve_forever's `finally` stops the server. Outside the catch block, since
        // this waits (and other greenlets may throw meanwhile).
        try {
            stop_server(sp, st.opt.stop_timeout);
        } catch (...) {
        }
        std::rethrow_exception(killed);
    }
}

// stop_accepting() / start_accepting(): record the wish, have each serving thread apply it
// (the calling thread at once, for its own worker), and wait until they all did. Each request
// posted to a thread holds a token that counts down when the request is destroyed: after it
// ran, or when that thread's hub went away without running it (a concurrent stop).
struct AcceptAcks {
    std::atomic<int> left{1};  // the caller's own share, released once everything is posted
    AsyncResult<void> done;
    void release() {
        if (left.fetch_sub(1) == 1) done.set();
    }
};
struct AcceptToken {
    std::shared_ptr<AcceptAcks> acks;
    explicit AcceptToken(std::shared_ptr<AcceptAcks> a) : acks(std::move(a)) {
        acks->left.fetch_add(1);
    }
    ~AcceptToken() { acks->release(); }
    AcceptToken(const AcceptToken&) = delete;
};

void set_accepting(const std::shared_ptr<ServerState>& sp, bool on) {
    ServerState& st = *sp;
    auto acks = std::make_shared<AcceptAcks>();
    std::shared_ptr<Run> run;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        if (st.phase.load() != kRunning || !st.run || st.run->stop_requested) return;
        run = st.run;
        run->accepting = on;
        for (std::size_t i = 1; i < run->workers.size(); ++i) {
            Worker* w = run->workers[i].get();
            if (w->hub)  // else the thread reads `accepting` when it registers
                Hub(w->hub).run_callback_threadsafe(
                    [w, t = std::make_shared<AcceptToken>(acks)] { apply_accepting(*w); });
        }
        if (!on_owner(*run))
            Hub(run->owner).run_callback_threadsafe([run, t = std::make_shared<AcceptToken>(acks)] {
                apply_accepting(*run->workers[0]);
            });
    }
    if (on_owner(*run)) apply_accepting(*run->workers[0]);
    acks->release();
    ThreadState* ts = tls_state;
    if (ts && ts->hub && ts->current == ts->hub->greenlet) return;  // the hub cannot wait
    acks->done.wait();
}

void destroy_server(const std::shared_ptr<ServerState>& sp) noexcept {
    if (!sp) return;
    const int ph = sp->phase.load();
    if (ph != kRunning && ph != kStopping) return;
    std::string what;
    try {
        stop_server(sp, Duration::zero());
        return;
    } catch (...) {
        what = describe_exception(std::current_exception());
    }
    say(sp->describe() + ": stopping it in its destructor failed with " + what +
        " (the stop goes on in the background)");
}

}  // namespace

Worker::~Worker() {
    if (thread.joinable()) {
        // Only when the stopper never ran to the end (its thread was torn down): a last resort
        // that blocks this OS thread until the worker thread has stopped.
        {
            std::lock_guard<std::mutex> lk(st->mu);
            run->stop_requested = true;
            request_thread_stop(this);
        }
        thread.join();
    }
}

}  // namespace cogent::detail

namespace cogent {

using detail::ServerState;

// ---- StreamServer ----------------------------------------------------------------------------

StreamServer::StreamServer(Address listen, Handler handler, std::size_t max_connections)
    : StreamServer(std::move(listen), std::move(handler),
                   ServerOptions{.max_connections = max_connections}) {}

StreamServer::StreamServer(Address listen, Handler handler, ServerOptions options)
    : st_(detail::make_state(true, std::move(options), nullptr)) {
    st_->handlers.stream = std::move(handler);
    detail::init_address(*st_, std::move(listen));
}

StreamServer::StreamServer(Address listen, Handler handler, Pool& pool, ServerOptions options)
    : st_(detail::make_state(true, std::move(options), &pool)) {
    st_->handlers.stream = std::move(handler);
    detail::init_address(*st_, std::move(listen));
}

StreamServer::StreamServer(Socket listener, Handler handler, ServerOptions options)
    : st_(detail::make_state(true, std::move(options), nullptr)) {
    st_->handlers.stream = std::move(handler);
    detail::init_socket(*st_, std::move(listener));
}

StreamServer::StreamServer(Socket listener, Handler handler, Pool& pool, ServerOptions options)
    : st_(detail::make_state(true, std::move(options), &pool)) {
    st_->handlers.stream = std::move(handler);
    detail::init_socket(*st_, std::move(listener));
}

StreamServer::~StreamServer() { detail::destroy_server(st_); }

void StreamServer::start() { detail::start_server(st_); }
void StreamServer::serve_forever() { detail::serve_server(st_); }
void StreamServer::stop(TimeoutArg timeout) { detail::stop_server(st_, timeout); }
void StreamServer::stop_accepting() { detail::set_accepting(st_, false); }
void StreamServer::start_accepting() { detail::set_accepting(st_, true); }

Address StreamServer::address() const {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->address;
}
bool StreamServer::started() const noexcept { return st_->phase.load() == detail::kRunning; }
bool StreamServer::closed() const noexcept { return st_->open_sockets.load() == 0; }

// ---- DatagramServer --------------------------------------------------------------------------

DatagramServer::DatagramServer(Address listen, Handler handler, ServerOptions options)
    : st_(detail::make_state(false, std::move(options), nullptr)) {
    st_->handlers.dgram = std::move(handler);
    st_->handlers.dserver = this;
    detail::init_address(*st_, std::move(listen));
}

DatagramServer::DatagramServer(Socket socket, Handler handler, ServerOptions options)
    : st_(detail::make_state(false, std::move(options), nullptr)) {
    st_->handlers.dgram = std::move(handler);
    st_->handlers.dserver = this;
    detail::init_socket(*st_, std::move(socket));
}

DatagramServer::~DatagramServer() { detail::destroy_server(st_); }

void DatagramServer::start() { detail::start_server(st_); }
void DatagramServer::serve_forever() { detail::serve_server(st_); }
void DatagramServer::stop(TimeoutArg timeout) { detail::stop_server(st_, timeout); }
void DatagramServer::stop_accepting() { detail::set_accepting(st_, false); }
void DatagramServer::start_accepting() { detail::set_accepting(st_, true); }

std::size_t DatagramServer::sendto(std::string_view data, const Address& to) {
    ServerState& st = *st_;
    std::shared_ptr<detail::Run> run;
    {
        std::lock_guard<std::mutex> lk(st.mu);
        run = st.run;
    }
    const int ph = st.phase.load();
    if (!run || (ph != detail::kRunning && ph != detail::kStopping))
        throw std::logic_error("cogent: DatagramServer::sendto on a server that is not started");
    if (!detail::on_owner(*run))
        throw std::logic_error(
            "cogent: DatagramServer::sendto called from a thread other than the server's");
    detail::Worker& w = *run->workers[0];
    // Usually there is room in the socket buffer: send without waiting. Otherwise wait, one
    // greenlet at a time (a socket takes one waiting writer).
    const int fd = w.sock.fileno();
    if (fd >= 0) {
        ssize_t n = ::sendto(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                             to.sockaddr_ptr(), to.length());
        if (n >= 0) return std::size_t(n);
        const int e = errno;
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR)
            throw std::system_error(e, std::generic_category(),
                                    "cogent: DatagramServer::sendto to " + to.to_string());
    }
    std::lock_guard<Lock> lk(*w.send_lock);
    return w.sock.sendto(data, to);
}

Address DatagramServer::address() const {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->address;
}
bool DatagramServer::started() const noexcept { return st_->phase.load() == detail::kRunning; }
bool DatagramServer::closed() const noexcept { return st_->open_sockets.load() == 0; }

}  // namespace cogent
