// Real servers for the tests of the monkey patch with unmodified clients: a PostgreSQL server, a
// redis-server and a memcached, each started on 127.0.0.1 on a port picked free, in its own
// temporary directory, and stopped (and the directory removed) by the destructor.
//
//     cogent_test::PostgresServer pg;   // initdb + postgres; throws if it cannot start
//     PGconn* c = PQconnectdb(pg.conninfo().c_str());
//     cogent_test::RedisServer redis;   // redis-server --port P --bind 127.0.0.1
//     redisContext* r = redisConnect("127.0.0.1", redis.port());
//     cogent_test::MemcachedServer mc;  // memcached -l 127.0.0.1 -p P -U 0
//     memcached_server_add(memc, "127.0.0.1", mc.port());
//
// The harness installs nothing: the Debian packages (postgresql, redis-server, memcached) come
// from dev.sh.
// A server that cannot be started (package missing, initdb failing...) is a std::runtime_error
// whose message says what was missing or what the server wrote, so a test using it FAILS with a
// clear message instead of skipping silently.
//
// PostgreSQL refuses to run as root: when the test runs as root, initdb and postgres run as the
// `postgres` user (setpriv) and the temporary directory is chowned to it. Trust authentication,
// user "postgres", database "postgres", fsync off, Unix socket in the temporary directory.
// memcached refuses root too unless told whom to become: as root it gets -u memcache (the
// Debian package's user), or -u nobody without it.
//
// Everything here uses cogent (subprocess, Socket, sleep): construct and destroy the servers on
// a thread with a hub, from a greenlet (a test body is one). The servers run without the shim
// (LD_PRELOAD is removed from their environment) whichever way the test itself is patched.
#pragma once

#include <fcntl.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace cogent_test {

// A TCP port of 127.0.0.1 that was free a moment ago: bind port 0, read the port, close.
inline std::uint16_t free_loopback_port() {
    cogent::Socket s(AF_INET, SOCK_STREAM);
    s.bind(cogent::Address("127.0.0.1", 0));
    return s.local_address().port();
}

// True when something accepts TCP connections on 127.0.0.1:port.
inline bool loopback_accepts(std::uint16_t port) {
    cogent::Socket s(AF_INET, SOCK_STREAM);
    s.set_timeout(std::chrono::seconds(2));
    return s.connect_ex(cogent::Address("127.0.0.1", port)) == 0;
}

// A fresh directory under the system's temporary directory, removed with its contents when
// destroyed. Throws std::system_error when it cannot be created.
class TempDir {
public:
    explicit TempDir(const std::string& prefix) {
        std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        if (!mkdtemp(tmpl.data()))
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

namespace detail_real {

// The last `max` bytes of a file (a server's log, for an error message).
inline std::string file_tail(const std::string& path, std::size_t max = 2000) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return s.size() > max ? "..." + s.substr(s.size() - max) : s;
}

inline bool file_contains(const std::string& path, const std::string& needle) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str().find(needle) != std::string::npos;
}

// This process's environment without LD_PRELOAD: the servers run unpatched.
inline cogent::subprocess::Env server_env() {
    auto env = cogent::subprocess::Env::current();
    env.unset("LD_PRELOAD");
    env.set("LC_ALL", "C");
    return env;
}

// An open, append-mode log file for a server's stdout and stderr (the caller closes it once the
// child has its copy).
inline int open_log(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    return fd;
}

// Waits (up to `limit`) until `ready()` is true; throws std::runtime_error naming `what`, with
// the log's tail, when the child exits first or the time runs out.
template <class Ready>
void wait_until_ready(cogent::subprocess::Popen& child, const std::string& what,
                      const std::string& log, std::chrono::seconds limit, Ready ready) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        if (auto rc = child.poll())
            throw std::runtime_error(what + " exited with status " + std::to_string(*rc) +
                                     " while starting; its log:\n" + file_tail(log));
        if (ready()) return;
        if (std::chrono::steady_clock::now() - t0 > limit)
            throw std::runtime_error(what + " did not accept connections within " +
                                     std::to_string(limit.count()) + " s; its log:\n" +
                                     file_tail(log));
        cogent::sleep(std::chrono::milliseconds(20));
    }
}

// Stop a server: `sig`, up to 10 s for it to exit, then SIGKILL.
inline void stop_child(std::optional<cogent::subprocess::Popen>& child, int sig) noexcept {
    if (!child) return;
    try {
        if (!child->poll()) {
            child->send_signal(sig);
            try {
                child->wait(std::chrono::seconds(10));
            } catch (const cogent::subprocess::TimeoutExpired&) {
                child->kill();
                child->wait(std::chrono::seconds(10));
            }
        }
    } catch (...) {
        // A destructor must not throw; the child is at worst left to cogent's reaper.
    }
    child.reset();
}

// The first of /usr/bin/NAME, /usr/local/bin/NAME that can be run; std::runtime_error naming
// the Debian package otherwise.
inline std::string find_binary(const std::string& name, const std::string& package) {
    for (const char* dir : {"/usr/bin/", "/usr/local/bin/"}) {
        std::string p = dir + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    throw std::runtime_error(name +
                             " not found in /usr/bin or /usr/local/bin (install the Debian "
                             "package " +
                             package + "; dev.sh does)");
}

// Starts argv in `dir` (stdin /dev/null, stdout and stderr to `log`) as `child`, and waits
// until 127.0.0.1:port accepts a connection; kills it and throws (quoting the log) if it does
// not within 20 s. For the servers that need nothing more (redis-server, memcached).
inline void launch_tcp_server(std::optional<cogent::subprocess::Popen>& child,
                              const std::vector<std::string>& argv, const std::string& dir,
                              const std::string& log, const char* what, std::uint16_t port) {
    int logfd = open_log(log);
    cogent::subprocess::Options opts;
    opts.env = server_env();
    opts.cwd = dir;
    opts.stdin = cogent::subprocess::DEVNULL;
    opts.stdout = logfd;
    opts.stderr = logfd;
    try {
        child.emplace(argv, opts);
    } catch (...) {
        ::close(logfd);
        throw;
    }
    ::close(logfd);
    try {
        wait_until_ready(*child, what, log, std::chrono::seconds(20),
                         [&] { return loopback_accepts(port); });
    } catch (...) {
        stop_child(child, SIGKILL);
        throw;
    }
}

}  // namespace detail_real

// A PostgreSQL server (Debian's postgresql package: /usr/lib/postgresql/*/bin) on 127.0.0.1:
// initdb in a temporary directory, then postgres in the foreground (a child of the test).
// Not copyable or movable; construct and destroy it in a greenlet of a thread with a hub.
class PostgresServer {
public:
    // Creates the cluster and starts the server; returns once it accepts connections (up to
    // 30 s). Extra `name=value` settings may be given (passed as -c after the defaults, so
    // they win). Throws std::runtime_error when the binaries are missing, initdb fails, the
    // server exits or does not become ready.
    explicit PostgresServer(std::vector<std::string> settings = {}) : dir_("cogent-pg") {
        namespace dr = detail_real;
        std::string bin = find_bindir();
        std::string data = dir_.path() + "/data";
        log_ = dir_.path() + "/postgres.log";
        std::vector<std::string> as_user;
        if (::geteuid() == 0) {
            // postgres will not run as root: hand the directory to the postgres user.
            passwd* pw = ::getpwnam("postgres");
            if (!pw)
                throw std::runtime_error(
                    "PostgreSQL: running as root and there is no 'postgres' user to run the "
                    "server as (install the Debian package postgresql; dev.sh does)");
            if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::system_error(errno, std::generic_category(), "chown " + dir_.path());
            as_user = {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
        }
        port_ = free_loopback_port();

        cogent::subprocess::RunOptions init;
        init.env = dr::server_env();
        init.capture_output = true;
        init.timeout = std::chrono::seconds(60);
        init.cwd = dir_.path();
        std::vector<std::string> argv = as_user;
        argv.insert(argv.end(), {bin + "/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E",
                                 "UTF8", "--no-locale", "--no-sync"});
        auto r = cogent::subprocess::run(argv, init);
        if (r.returncode != 0)
            throw std::runtime_error("PostgreSQL: initdb failed with status " +
                                     std::to_string(r.returncode) + ":\n" + r.stdout + r.stderr);

        argv = as_user;
        argv.insert(argv.end(), {bin + "/postgres", "-D", data, "-p", std::to_string(port_), "-k",
                                 dir_.path()});
        settings.insert(settings.begin(),
                        {"listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off",
                         "full_page_writes=off", "shared_buffers=16MB", "max_connections=120",
                         "logging_collector=off"});
        for (auto& s : settings) {
            argv.push_back("-c");
            argv.push_back(s);
        }
        int logfd = dr::open_log(log_);
        cogent::subprocess::Options opts;
        opts.env = dr::server_env();
        opts.cwd = dir_.path();
        opts.stdin = cogent::subprocess::DEVNULL;
        opts.stdout = logfd;
        opts.stderr = logfd;
        try {
            child_.emplace(argv, opts);
        } catch (...) {
            ::close(logfd);
            throw;
        }
        ::close(logfd);
        try {
            dr::wait_until_ready(*child_, "postgres", log_, std::chrono::seconds(30), [&] {
                return dr::file_contains(log_, "ready to accept connections") &&
                       loopback_accepts(port_);
            });
        } catch (...) {
            dr::stop_child(child_, SIGQUIT);
            throw;
        }
    }
    // Fast shutdown (SIGINT: open sessions are ended), SIGKILL after 10 s; removes the files.
    ~PostgresServer() { detail_real::stop_child(child_, SIGINT); }
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    // The TCP port on 127.0.0.1.
    std::uint16_t port() const noexcept { return port_; }
    // The directory holding the Unix socket (.s.PGSQL.<port>).
    const std::string& socket_dir() const noexcept { return dir_.path(); }
    // The server's log file (stdout and stderr).
    const std::string& log_path() const noexcept { return log_; }
    // A libpq connection string for TCP to 127.0.0.1 (user and database "postgres").
    std::string conninfo() const {
        return "host=127.0.0.1 port=" + std::to_string(port_) +
               " user=postgres dbname=postgres connect_timeout=10";
    }

private:
    // The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres.
    static std::string find_bindir() {
        glob_t g{};
        std::vector<std::string> found;
        if (::glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &g) == 0)
            for (std::size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
        ::globfree(&g);
        std::erase_if(found, [](const std::string& p) {
            auto dir = std::filesystem::path(p).parent_path();
            return !std::filesystem::exists(dir / "initdb");
        });
        if (found.empty())
            throw std::runtime_error(
                "PostgreSQL not found: no /usr/lib/postgresql/*/bin/{postgres,initdb} (install "
                "the Debian package postgresql; dev.sh does)");
        // Versions are plain numbers (15, 16...): the longest, then greatest, string is newest.
        std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
            return a.size() != b.size() ? a.size() < b.size() : a < b;
        });
        return std::filesystem::path(found.back()).parent_path().string();
    }

    TempDir dir_;
    std::string log_;
    std::uint16_t port_ = 0;
    std::optional<cogent::subprocess::Popen> child_;
};

// A server process on 127.0.0.1:port() in a temporary directory, its stdout and stderr in
// log_path(): what RedisServer and MemcachedServer share. Stopped with SIGTERM (SIGKILL after
// 10 s) when destroyed; the directory goes with it.
class LoopbackServer {
public:
    LoopbackServer(const LoopbackServer&) = delete;
    LoopbackServer& operator=(const LoopbackServer&) = delete;

    // The TCP port on 127.0.0.1.
    std::uint16_t port() const noexcept { return port_; }
    // The server's log file (stdout and stderr).
    const std::string& log_path() const noexcept { return log_; }

protected:
    LoopbackServer(const char* dir_prefix, const char* log_name)
        : dir_(dir_prefix), log_(dir_.path() + "/" + log_name) {}
    ~LoopbackServer() { detail_real::stop_child(child_, SIGTERM); }

    TempDir dir_;
    std::string log_;
    std::uint16_t port_ = 0;
    std::optional<cogent::subprocess::Popen> child_;
};

// A redis-server on 127.0.0.1 (`--port P --bind 127.0.0.1 --save "" --appendonly no`), its
// working directory a temporary one. Not copyable or movable; construct and destroy it in a
// greenlet of a thread with a hub.
class RedisServer : public LoopbackServer {
public:
    // Starts the server and returns once it accepts connections (up to 20 s). Throws
    // std::runtime_error when redis-server is missing, exits or does not become ready.
    RedisServer() : LoopbackServer("cogent-redis", "redis.log") {
        namespace dr = detail_real;
        const std::string bin = dr::find_binary("redis-server", "redis-server");
        port_ = free_loopback_port();
        std::vector<std::string> argv = {
            bin, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--dir", dir_.path()};
        // No persistence, no daemon, no Unix socket.
        argv.insert(argv.end(),
                    {"--save", "", "--appendonly", "no", "--daemonize", "no", "--unixsocket", ""});
        dr::launch_tcp_server(child_, argv, dir_.path(), log_, "redis-server", port_);
    }
    // SIGTERM (redis saves nothing: --save ""), SIGKILL after 10 s; removes the files.
};

// A memcached on 127.0.0.1 (`-l 127.0.0.1 -p P -U 0`: TCP only), its working directory a
// temporary one (memcached writes nothing there). Not copyable or movable; construct and destroy
// it in a greenlet of a thread with a hub.
class MemcachedServer : public LoopbackServer {
public:
    // Starts the server and returns once it accepts connections (up to 20 s). Throws
    // std::runtime_error when memcached is missing, exits or does not become ready.
    MemcachedServer() : LoopbackServer("cogent-memcached", "memcached.log") {
        namespace dr = detail_real;
        const std::string bin = dr::find_binary("memcached", "memcached");
        port_ = free_loopback_port();
        std::vector<std::string> argv = {bin,  "-l", "127.0.0.1", "-p", std::to_string(port_),
                                         "-U", "0"};
        if (::geteuid() == 0)
            argv.insert(argv.end(), {"-u", ::getpwnam("memcache") ? "memcache" : "nobody"});
        dr::launch_tcp_server(child_, argv, dir_.path(), log_, "memcached", port_);
    }
    // SIGTERM (memcached keeps nothing), SIGKILL after 10 s; removes the directory.
};

}  // namespace cogent_test
