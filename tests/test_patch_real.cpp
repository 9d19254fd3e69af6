// The monkey patch with real, unmodified clients: libpq against PostgreSQL, hiredis against
// redis-server, libmemcached's connection pool against memcached (all three started by
// tests/real_servers.hpp on loopback) and libcurl's easy API against a cogent StreamServer in
// this process. The shim is linked into this test (patch_dep): the libraries' blocking
// connect/poll/recv calls, and the pthread mutexes and conditions they wait on, must park only
// the calling greenlet.
//
// Proof that the shim does the waiting, not luck: the libpq test reruns a small variant in a
// child with COGENT_PATCH=none and sees it serialize; the hiredis test requires every consumer
// to sit in BLPOP at the same time (redis's own blocked_clients count), which one thread can
// only achieve cooperatively; the curl test's server runs on the same hub as the clients, so
// an uncooperative poll in curl would leave it unanswered until curl's 2 s timeout; the
// memcached pool test reruns in a child without the sync family and sees the fetches that must
// wait for a connection time out, their holders never getting the thread back.
//
// Test cases marked doctest::skip() are the children those tests run (this binary re-executed
// with --no-skip and a test-case filter); run alone they do nothing useful.
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libmemcached-1.0/memcached.h>
#include <libmemcachedutil-1.0/pool.h>
#include <libpq-fe.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cogent/cogent.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"
#include "real_servers.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;

namespace {

// This test binary's own path, to re-execute it as a child.
std::string self_exe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    REQUIRE(n > 0);
    return std::string(buf, n);
}

// Run this binary's skipped test case `name` in a child with the extra environment `env`;
// returns its status and output (stdout and stderr together). Bounded to 60 s.
cogent::subprocess::CompletedProcess run_self(const std::string& name,
                                              const std::map<std::string, std::string>& env) {
    cogent::subprocess::RunOptions o;
    auto e = cogent::subprocess::Env::current();
    for (auto& [k, v] : env) e.set(k, v);
    o.env = e;
    o.stdout = cogent::subprocess::PIPE;
    o.stderr = cogent::subprocess::STDOUT;
    o.timeout = 60s;
    return cogent::subprocess::run({self_exe(), "--no-skip", "--test-case=" + name}, o);
}

// The number after "key=" in a child's output (-1 if absent).
double figure(const std::string& out, const std::string& key) {
    auto p = out.find(key + "=");
    if (p == std::string::npos) return -1;
    return std::atof(out.c_str() + p + key.size() + 1);
}

// Runs a function when it goes out of scope (cleanup on every exit path, REQUIRE included).
struct Finally {
    std::function<void()> fn;
    ~Finally() { fn(); }
};

std::string env_or_fail(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name << " is not set: this test case is a child of another");
    return v;
}

// ---- libpq ----

struct PgPhases {
    double connect_ms = 0;  // all n connections made (concurrently when patched)
    double query_ms = 0;    // all n SELECT pg_sleep(0.2) done
    std::vector<std::string> errors;
};

// n greenlets each open their own connection; once all are connected they run
// SELECT pg_sleep(0.2) together. Both phases are timed.
PgPhases pg_sleep_phases(const std::string& conninfo, int n) {
    PgPhases r;
    std::vector<PGconn*> conns(n, nullptr);
    cogent::Event all_connected, go;
    int connected = 0;
    std::vector<cogent::AnyGreenlet> gs;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i)
        gs.push_back(cogent::spawn([&, i] {
            PGconn* c = conns[i] = PQconnectdb(conninfo.c_str());
            if (PQstatus(c) != CONNECTION_OK)
                r.errors.push_back(std::string("connect: ") + PQerrorMessage(c));
            if (++connected == n) all_connected.set();
            go.wait();
            if (PQstatus(c) != CONNECTION_OK) return;
            PGresult* res = PQexec(c, "SELECT pg_sleep(0.2)");
            if (PQresultStatus(res) != PGRES_TUPLES_OK)
                r.errors.push_back(std::string("query: ") + PQerrorMessage(c));
            PQclear(res);
        }));
    bool all = all_connected.wait(30s);
    r.connect_ms = ms_since(t0);
    if (!all) r.errors.push_back("not all connections were made within 30 s");
    auto t1 = std::chrono::steady_clock::now();
    go.set();
    if (cogent::joinall(gs, 30s).size() != gs.size())
        r.errors.push_back("not all queries finished within 30 s");
    r.query_ms = ms_since(t1);
    cogent::killall(gs);
    for (PGconn* c : conns)
        if (c) PQfinish(c);
    return r;
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "libpq: 50 greenlets run SELECT pg_sleep(0.2) at once") {
    REQUIRE_MESSAGE(cogent::patch::loaded(), "libcogent_patch.so is not loaded in this test");
    REQUIRE(cogent::patch::is_patched(cogent::patch::all));
    cogent_test::PostgresServer pg;

    PgPhases r = pg_sleep_phases(pg.conninfo(), 50);
    for (auto& e : r.errors) FAIL_CHECK(e);
    MESSAGE("libpq, 50 greenlets: connect phase " << r.connect_ms << " ms, 50 x pg_sleep(0.2) in "
                                                  << r.query_ms << " ms (sequential: 10000 ms)");
    CHECK(r.query_ms >= 190);
    CHECK(r.query_ms < 5000);  // loose (loaded machines), yet half the sequential time

    // The contrast: the same with the shim switched off (COGENT_PATCH=none), 5 greenlets.
    auto c = run_self("libpq child: unpatched greenlets",
                      {{"COGENT_PATCH", "none"}, {"COGENT_PREAL_PG", pg.conninfo()}});
    REQUIRE_MESSAGE(c.returncode == 0, "child output:\n" << c.stdout);
    double unpatched = figure(c.stdout, "query_phase_ms");
    MESSAGE("libpq, 5 greenlets with COGENT_PATCH=none: 5 x pg_sleep(0.2) in " << unpatched
                                                                               << " ms");
    CHECK(unpatched >= 950);  // one after the other: 5 x 200 ms
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "libpq child: unpatched greenlets" * doctest::skip()) {
    std::string conninfo = env_or_fail("COGENT_PREAL_PG");
    CHECK(cogent::patch::families() == 0);
    PgPhases r = pg_sleep_phases(conninfo, 5);
    for (auto& e : r.errors) FAIL_CHECK(e);
    std::printf("query_phase_ms=%.1f\n", r.query_ms);
    std::fflush(stdout);
}

// ---- hiredis ----

namespace {

// A redis command's reply as a string ("" for nil), or the error. Throws on a lost connection.
std::string redis_str(redisContext* c, const char* fmt, const char* arg = nullptr) {
    auto* r = static_cast<redisReply*>(arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt));
    if (!r) throw std::runtime_error(std::string("redis: ") + c->errstr);
    std::string s;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR)
        s.assign(r->str, r->len);
    else if (r->type == REDIS_REPLY_INTEGER)
        s = std::to_string(r->integer);
    freeReplyObject(r);
    return s;
}

redisContext* redis_connect(std::uint16_t port) {
    redisContext* c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        std::string e = c ? c->errstr : "out of memory";
        if (c) redisFree(c);
        throw std::runtime_error("redisConnect: " + e);
    }
    return c;
}

// redis's count of clients blocked in BLPOP and friends (INFO clients).
long blocked_clients(redisContext* c) {
    std::string info = redis_str(c, "INFO clients");
    auto p = info.find("blocked_clients:");
    return p == std::string::npos ? -1 : std::atol(info.c_str() + p + 16);
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "hiredis: greenlets blocked in BLPOP get every pushed item exactly once") {
    REQUIRE_MESSAGE(cogent::patch::loaded(), "libcogent_patch.so is not loaded in this test");
    cogent_test::RedisServer redis;
    constexpr int kConsumers = 20, kItems = 500;
    const std::string list = "cogent:q";

    // Should the shim fail to make BLPOP cooperative, the first consumer would block this
    // thread for good; a plain thread (no hub: unpatched) then pushes one "watchdog" item per
    // consumer after 60 s, so the test ends and fails instead of hanging.
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread watchdog_thread([&, port = redis.port()] {
        std::unique_lock lk(mu);
        if (cv.wait_for(lk, 60s, [&] { return done; })) return;
        lk.unlock();
        redisContext* c = redisConnect("127.0.0.1", port);
        if (!c || c->err) return;
        for (int i = 0; i < kConsumers + 1; ++i)
            freeReplyObject(redisCommand(c, "RPUSH %s watchdog", list.c_str()));
        redisFree(c);
    });
    Finally stop_watchdog{[&] {
        {
            std::lock_guard lk(mu);
            done = true;
        }
        cv.notify_all();
        watchdog_thread.join();
    }};

    std::vector<std::string> received;
    int stops = 0, watchdogs = 0;
    std::vector<std::string> errors;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<cogent::AnyGreenlet> consumers;
    Finally stop_consumers{[&] { cogent::killall(consumers); }};
    for (int i = 0; i < kConsumers; ++i)
        consumers.push_back(cogent::spawn([&] {
            redisContext* c = nullptr;
            try {
                c = redis_connect(redis.port());
                for (;;) {
                    auto* r = static_cast<redisReply*>(redisCommand(c, "BLPOP %s 0", list.c_str()));
                    if (!r) throw std::runtime_error(std::string("BLPOP: ") + c->errstr);
                    std::string v;
                    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
                        v.assign(r->element[1]->str, r->element[1]->len);
                    freeReplyObject(r);
                    if (v == "stop") {
                        ++stops;
                        break;
                    }
                    if (v == "watchdog") {
                        ++watchdogs;
                        break;
                    }
                    received.push_back(v);
                }
            } catch (const std::exception& e) {
                errors.push_back(e.what());
            }
            if (c) redisFree(c);
        }));

    redisContext* prod = redis_connect(redis.port());
    Finally free_prod{[&] { redisFree(prod); }};
    // Every consumer must be inside BLPOP at the same time before anything is pushed.
    long blocked = 0;
    for (auto t = std::chrono::steady_clock::now();
         std::chrono::steady_clock::now() - t < 30s && watchdogs == 0; cogent::sleep(10ms))
        if ((blocked = blocked_clients(prod)) == kConsumers) break;
    CHECK_MESSAGE(blocked == kConsumers, "only " << blocked << " of " << kConsumers
                                                 << " consumers were blocked in BLPOP at once");
    double blocked_ms = ms_since(t0);

    // The producer is a greenlet too: it pushes one item per RPUSH while consumers take them.
    auto t1 = std::chrono::steady_clock::now();
    auto producer = cogent::spawn([&] {
        for (int i = 0; i < kItems; ++i)
            redis_str(prod, ("RPUSH " + list + " item-" + std::to_string(i)).c_str());
        for (int i = 0; i < kConsumers; ++i) redis_str(prod, ("RPUSH " + list + " stop").c_str());
    });
    Finally stop_producer{[&] { producer.kill(); }};
    producer.get(60s);
    CHECK(cogent::joinall(consumers, 60s).size() == consumers.size());
    double deliver_ms = ms_since(t1);
    std::string left = redis_str(prod, ("LLEN " + list).c_str());

    for (auto& e : errors) FAIL_CHECK(e);
    CHECK_MESSAGE(watchdogs == 0, "the watchdog thread had to unblock the consumers");
    CHECK(stops == kConsumers);
    CHECK(left == "0");
    CHECK(received.size() == std::size_t(kItems));  // none twice...
    std::set<std::string> got(received.begin(), received.end()), want;
    for (int i = 0; i < kItems; ++i) want.insert("item-" + std::to_string(i));
    CHECK(got == want);  // ...and none lost
    CHECK(deliver_ms < 30000);
    MESSAGE("hiredis: " << kConsumers << " greenlets blocked in BLPOP after " << blocked_ms
                        << " ms; " << kItems << " items delivered in " << deliver_ms << " ms");
}

// ---- libcurl ----

namespace {

std::size_t curl_append(char* p, std::size_t size, std::size_t n, void* out) {
    static_cast<std::string*>(out)->append(p, size * n);
    return size * n;
}

// A DnsServer on port 53 of some 127.53.x.y (the resolv.conf nameserver line has no port).
// Tries a few addresses should one be taken (another test may use 127.0.0.153:53).
std::unique_ptr<cogent_test::DnsServer> dns_on_port_53() {
    std::mt19937 rng(std::random_device{}());
    for (int attempt = 0;; ++attempt) {
        std::string host =
            "127.53." + std::to_string(rng() % 250 + 1) + "." + std::to_string(rng() % 250 + 1);
        try {
            return std::make_unique<cogent_test::DnsServer>(host, 53);
        } catch (const std::system_error&) {
            if (attempt == 9) throw;
        }
    }
}

}  // namespace

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "libcurl: concurrent easy fetches from a cogent server, names from the test DNS") {
    REQUIRE_MESSAGE(cogent::patch::loaded(), "libcogent_patch.so is not loaded in this test");
    // Debian's libcurl resolves in a helper pthread (its threaded resolver) with glibc's
    // getaddrinfo, which only asks the nameservers of /etc/resolv.conf, on port 53. The child
    // gets a private mount namespace with a resolv.conf naming the test DNS server bound over
    // /etc/resolv.conf (needs root, as binding port 53 does).
    if (::geteuid() != 0)
        COGENT_SKIP("the libcurl test needs root (a mount namespace and port 53)");
    auto c = run_self("libcurl child: in a mount namespace", {{"COGENT_PREAL_CURL", "1"}});
    CHECK_MESSAGE(c.returncode == 0, "child output:\n" << c.stdout);
    double ms = figure(c.stdout, "fetch_phase_ms");
    MESSAGE("libcurl: 10 concurrent fetches (server answers after 100 ms, DNS after 50 ms) in "
            << ms << " ms (sequential: >= 1500 ms)");
    CHECK(ms > 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "libcurl child: in a mount namespace" * doctest::skip()) {
    env_or_fail("COGENT_PREAL_CURL");
    REQUIRE_MESSAGE(::geteuid() == 0, "this test needs root (a mount namespace and port 53)");
    REQUIRE_MESSAGE(::unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): " << std::strerror(errno));
    // Private first, so that the bind mount below does not propagate to the host's namespace.
    REQUIRE_MESSAGE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
                    "mount / private: " << std::strerror(errno));
    auto dns = dns_on_port_53();
    cogent_test::TempDir dir("cogent-curl");
    std::string conf = dir.path() + "/resolv.conf";
    std::ofstream(conf) << "nameserver " << dns->host() << "\noptions timeout:2 attempts:2\n";
    REQUIRE_MESSAGE(::mount(conf.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0,
                    "bind-mount resolv.conf: " << std::strerror(errno));
    const std::string name = "web.cogent.test";
    dns->add_a(name, "127.0.0.1");
    dns->set_delay(50ms);

    // The HTTP server: answers each request after 100 ms, in its own greenlet on this hub.
    std::atomic<int> served{0};
    int active = 0, peak = 0;  // requests being answered at once
    cogent::StreamServer server(
        cogent::Address("127.0.0.1", 0), [&](cogent::Socket& s, const cogent::Address&) {
            cogent::SocketReader in(s);
            std::string request = in.readline();
            while (in.readline() != "\r\n") {
            }
            peak = std::max(peak, ++active);
            cogent::sleep(100ms);
            --active;
            std::string path = request.substr(4, request.find(' ', 4) - 4);
            std::string body = "hello " + path;
            s.sendall("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body);
            ++served;
        });
    server.start();
    std::uint16_t port = server.address().port();

    constexpr int kFetches = 10;
    REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
    std::vector<std::string> bodies(kFetches), errors;
    std::vector<cogent::AnyGreenlet> gs;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kFetches; ++i)
        gs.push_back(cogent::spawn([&, i] {
            CURL* h = curl_easy_init();
            std::string url =
                "http://" + name + ":" + std::to_string(port) + "/page" + std::to_string(i);
            curl_easy_setopt(h, CURLOPT_URL, url.c_str());
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
            curl_easy_setopt(h, CURLOPT_PROXY, "");  // never an http_proxy from the environment
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_append);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &bodies[i]);
            CURLcode rc = curl_easy_perform(h);
            long status = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            if (rc != CURLE_OK)
                errors.push_back(url + ": " + curl_easy_strerror(rc));
            else if (status != 200)
                errors.push_back(url + ": status " + std::to_string(status));
            curl_easy_cleanup(h);
        }));
    CHECK(cogent::joinall(gs, 20s).size() == gs.size());
    double ms = ms_since(t0);
    cogent::killall(gs);
    server.stop();
    curl_global_cleanup();

    for (auto& e : errors) FAIL_CHECK(e);
    for (int i = 0; i < kFetches; ++i) CHECK(bodies[i] == "hello /page" + std::to_string(i));
    CHECK(served == kFetches);
    CHECK(dns->queries_for(name) >= std::size_t(kFetches));  // each easy handle resolved it
    // Sequential would be kFetches x (50 ms DNS + 100 ms server) = 1500 ms, one request at a
    // time. The time is loose (loaded machines); the overlap is what shows.
    CHECK(peak >= 2);
    CHECK(ms < 10000);
    std::printf("fetch_phase_ms=%.1f dns_queries=%zu\n", ms, dns->queries_for(name));
    std::fflush(stdout);
}

// ---- libmemcached ----

namespace {

const std::string kMcKey = "cogent:key", kMcValue = "cogent-value";

// A pool of `size` connections (created lazily by libmemcached) to the memcached on
// 127.0.0.1:port, after storing kMcKey through the pool's master handle.
class McPool {
public:
    McPool(std::uint16_t port, std::uint32_t size) : master_(memcached_create(nullptr)) {
        REQUIRE(master_ != nullptr);
        REQUIRE(memcached_server_add(master_, "127.0.0.1", port) == MEMCACHED_SUCCESS);
        memcached_return_t rc = memcached_set(master_, kMcKey.data(), kMcKey.size(),
                                              kMcValue.data(), kMcValue.size(), 0, 0);
        REQUIRE_MESSAGE(rc == MEMCACHED_SUCCESS, "memcached_set: " << error(master_, rc));
        pool_ = memcached_pool_create(master_, size, size);
        REQUIRE(pool_ != nullptr);
    }
    ~McPool() {
        if (pool_) memcached_pool_destroy(pool_);
        memcached_free(master_);
    }
    McPool(const McPool&) = delete;
    McPool& operator=(const McPool&) = delete;

    memcached_pool_st* get() const noexcept { return pool_; }

    static std::string error(const memcached_st* m, memcached_return_t rc) {
        return m ? memcached_last_error_message(m) : memcached_strerror(nullptr, rc);
    }

private:
    memcached_st* master_;
    memcached_pool_st* pool_ = nullptr;
};

// GET kMcKey through a handle of the pool: real network I/O, so the caller (a greenlet) parks
// in the patched poll while it holds the handle. "" when it read kMcValue, else what went wrong.
std::string mc_get(memcached_st* m) {
    std::size_t len = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* v = memcached_get(m, kMcKey.data(), kMcKey.size(), &len, &flags, &rc);
    if (!v) return "memcached_get: " + McPool::error(m, rc);
    std::string got(v, len);
    std::free(v);
    return got == kMcValue ? "" : "memcached_get read '" + got + "'";
}

struct McPoolRun {
    int ok = 0;               // fetched, read kMcValue, released
    int timeouts = 0;         // memcached_pool_fetch gave up (MEMCACHED_TIMEOUT)
    int peak_held = 0;        // handles out of the pool at once
    int peak_waiting = 0;     // greenlets inside memcached_pool_fetch at once
    std::size_t handles = 0;  // distinct handles the pool gave out
    long ticks_while_waiting = 0;
    double max_tick_gap_ms = 0;
    double ms = 0;
    std::vector<std::string> errors;
};

// n greenlets each fetch a handle from a pool of pool_size (waiting up to fetch_timeout for
// one), GET the key and keep the handle 20 ms longer before releasing it; a ticker greenlet
// counts the ticks it gets while some greenlet is inside memcached_pool_fetch, which it can
// only get if that fetch parked the greenlet and not the thread.
McPoolRun mc_pool_greenlets(std::uint16_t port, int n, std::uint32_t pool_size,
                            std::chrono::seconds fetch_timeout) {
    McPoolRun r;
    McPool pool(port, pool_size);
    int held = 0, waiting = 0;
    std::set<memcached_st*> handles;
    bool stop = false;
    auto ticker = cogent::spawn([&] {
        auto last = std::chrono::steady_clock::now();
        while (!stop) {
            cogent::sleep(5ms);
            r.max_tick_gap_ms = std::max(r.max_tick_gap_ms, ms_since(last));
            last = std::chrono::steady_clock::now();
            if (waiting > 0) ++r.ticks_while_waiting;
        }
    });
    std::vector<cogent::AnyGreenlet> gs;
    Finally stop_all{[&] {
        cogent::killall(gs);
        ticker.kill();
    }};
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i)
        gs.push_back(cogent::spawn([&] {
            timespec rel{static_cast<time_t>(fetch_timeout.count()), 0};
            memcached_return_t rc;
            r.peak_waiting = std::max(r.peak_waiting, ++waiting);
            memcached_st* m = memcached_pool_fetch(pool.get(), &rel, &rc);
            --waiting;
            if (!m) {
                if (rc == MEMCACHED_TIMEOUT)
                    ++r.timeouts;
                else
                    r.errors.push_back("memcached_pool_fetch: " + McPool::error(nullptr, rc));
                return;
            }
            r.peak_held = std::max(r.peak_held, ++held);
            handles.insert(m);
            std::string e = mc_get(m);
            cogent::sleep(20ms);
            --held;
            memcached_pool_release(pool.get(), m);
            if (e.empty())
                ++r.ok;
            else
                r.errors.push_back(e);
        }));
    if (cogent::joinall(gs, fetch_timeout * n + 30s).size() != gs.size())
        r.errors.push_back("not all greenlets finished");
    r.ms = ms_since(t0);
    stop = true;
    ticker.join();
    r.handles = handles.size();
    return r;
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "libmemcached's connection pool: 6 greenlets share a pool of 2") {
    REQUIRE_MESSAGE(cogent::patch::loaded(), "libcogent_patch.so is not loaded in this test");
    REQUIRE(cogent::patch::is_patched(cogent::patch::sync));
    cogent_test::MemcachedServer mc;

    // The pool waits in pthread_cond_timedwait for a handle that another greenlet of this
    // thread holds while parked in poll: only a cooperative wait lets that one run and return it.
    constexpr int kGreenlets = 6;
    constexpr std::uint32_t kPool = 2;
    McPoolRun r = mc_pool_greenlets(mc.port(), kGreenlets, kPool, 5s);
    for (auto& e : r.errors) FAIL_CHECK(e);
    CHECK(r.ok == kGreenlets);
    CHECK(r.timeouts == 0);
    CHECK(r.peak_held == int(kPool));  // shared: both handles out at once, never a third
    CHECK(r.handles <= kPool);
    CHECK(r.peak_waiting == kGreenlets - int(kPool));  // the others all waited at once
    CHECK(r.ticks_while_waiting > 0);
    CHECK(r.max_tick_gap_ms < 1000);  // loose (loaded machines): the hub never stood still
    CHECK(r.ms < 2500);               // 3 rounds of ~20 ms; the fetch timeout is 5 s
    MESSAGE("libmemcached pool of "
            << kPool << ", " << kGreenlets << " greenlets: " << r.ms << " ms, " << r.peak_waiting
            << " waiting at once, ticker " << r.ticks_while_waiting
            << " ticks during the waits, longest tick gap " << r.max_tick_gap_ms << " ms");

    // The contrast: without the sync family the first wait blocks the thread, the holders
    // never run, and every fetch that had to wait times out (up to 1 s each here, not 5).
    auto c = run_self("libmemcached child: pool without the sync family",
                      {{"COGENT_PATCH", "socket,dns,time,select"},
                       {"COGENT_PREAL_MEMCACHED", std::to_string(mc.port())}});
    REQUIRE_MESSAGE(c.returncode == 0, "child output:\n" << c.stdout);
    double ok = figure(c.stdout, "ok"), timeouts = figure(c.stdout, "timeouts");
    MESSAGE("libmemcached pool without the sync family: " << ok << " fetched, " << timeouts
                                                          << " timed out");
    CHECK(timeouts == kGreenlets - int(kPool));
    CHECK(ok == kPool);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "libmemcached child: pool without the sync family" * doctest::skip()) {
    int port = std::atoi(env_or_fail("COGENT_PREAL_MEMCACHED").c_str());
    CHECK_FALSE(cogent::patch::is_patched(cogent::patch::sync));
    McPoolRun r = mc_pool_greenlets(static_cast<std::uint16_t>(port), 6, 2, 1s);
    for (auto& e : r.errors) FAIL_CHECK(e);
    std::printf("ok=%d timeouts=%d ms=%.1f\n", r.ok, r.timeouts, r.ms);
    std::fflush(stdout);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "libmemcached's connection pool: threads and greenlets wake each other") {
    REQUIRE_MESSAGE(cogent::patch::loaded(), "libcogent_patch.so is not loaded in this test");
    REQUIRE(cogent::patch::is_patched(cogent::patch::sync));
    cogent_test::MemcachedServer mc;
    McPool pool(mc.port(), 2);
    constexpr int kThreads = 2, kGreenlets = 4;

    // Round 1: the two threads (no hub: they sleep in the kernel) hold both handles until all
    // the greenlets wait in memcached_pool_fetch; their releases must wake parked greenlets.
    // Round 2: two greenlets hold both handles until the threads wait; the greenlets' releases
    // must wake the sleeping threads. The waits are timed: a wake-up well before the 5 s fetch
    // timeout can only have come from the other side's release.
    std::atomic<int> held{0}, peak_held{0}, threads_holding{0}, greenlets_asked{0},
        greenlets_waiting{0}, threads_fetching_again{0}, threads_done{0};
    std::atomic<bool> greenlets_hold{false}, abandon{false};
    // A std::mutex (pthread, so under the sync family too), shared by threads and greenlets.
    std::mutex errors_mu;
    std::vector<std::string> errors;
    auto error = [&](const std::string& e) {
        std::lock_guard lk(errors_mu);
        errors.push_back(e);
    };
    auto take = [&](memcached_st* m, memcached_return_t rc, const char* who) {
        if (!m) {
            error(std::string(who) + ": memcached_pool_fetch: " + McPool::error(nullptr, rc));
            return false;
        }
        int now = ++held, peak = peak_held.load();
        while (now > peak && !peak_held.compare_exchange_weak(peak, now)) {
        }
        return true;
    };
    auto give_back = [&](memcached_st* m, const char* who) {
        if (std::string e = mc_get(m); !e.empty()) error(std::string(who) + ": " + e);
        --held;
        memcached_pool_release(pool.get(), m);
    };
    // Bounded waits for the other side: a thread sleeps, a greenlet parks.
    auto thread_until = [&](const std::function<bool()>& pred) {
        for (auto t = std::chrono::steady_clock::now(); !pred() && !abandon;
             std::this_thread::sleep_for(1ms))
            if (std::chrono::steady_clock::now() - t > 20s) return false;
        return !abandon;
    };
    auto green_until = [&](const std::function<bool()>& pred) {
        for (auto t = std::chrono::steady_clock::now(); !pred(); cogent::sleep(1ms))
            if (std::chrono::steady_clock::now() - t > 20s) return false;
        return true;
    };

    std::vector<double> thread_wait_ms(kThreads, -1), greenlet_wait_ms(kGreenlets, -1);
    std::vector<std::thread> threads;
    Finally join_threads{[&] {
        abandon = true;
        for (auto& t : threads) t.join();
    }};
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            timespec rel{5, 0};
            memcached_return_t rc;
            memcached_st* m = memcached_pool_fetch(pool.get(), &rel, &rc);
            if (take(m, rc, "thread, round 1")) {
                ++threads_holding;
                if (!thread_until([&] { return greenlets_asked == kGreenlets; }))
                    error("thread: the greenlets did not all wait for a handle");
                std::this_thread::sleep_for(30ms);  // the last one is parked by now
                give_back(m, "thread, round 1");
            }
            if (!thread_until([&] { return greenlets_hold.load(); }))
                error("thread: the greenlets did not take both handles");
            ++threads_fetching_again;
            auto t0 = std::chrono::steady_clock::now();
            m = memcached_pool_fetch(pool.get(), &rel, &rc);
            thread_wait_ms[i] = ms_since(t0);
            if (take(m, rc, "thread, round 2")) give_back(m, "thread, round 2");
            ++threads_done;
        });

    // A ticker proves the hub kept running while greenlets waited for the threads' handles.
    long ticks_while_waiting = 0;
    bool stop = false;
    auto ticker = cogent::spawn([&] {
        while (!stop) {
            cogent::sleep(5ms);
            if (greenlets_waiting > 0) ++ticks_while_waiting;
        }
    });
    std::vector<cogent::AnyGreenlet> gs;
    Finally stop_greenlets{[&] {
        cogent::killall(gs);
        ticker.kill();
    }};

    REQUIRE(green_until([&] { return threads_holding == kThreads; }));
    for (int i = 0; i < kGreenlets; ++i)
        gs.push_back(cogent::spawn([&, i] {
            timespec rel{5, 0};
            memcached_return_t rc;
            ++greenlets_waiting;
            ++greenlets_asked;
            auto t0 = std::chrono::steady_clock::now();
            memcached_st* m = memcached_pool_fetch(pool.get(), &rel, &rc);
            greenlet_wait_ms[i] = ms_since(t0);
            --greenlets_waiting;
            if (!take(m, rc, "greenlet, round 1")) return;
            cogent::sleep(5ms);
            give_back(m, "greenlet, round 1");
        }));
    CHECK(cogent::joinall(gs, 30s).size() == gs.size());
    long round1_ticks = ticks_while_waiting;
    gs.clear();

    int holding = 0;
    for (int i = 0; i < 2; ++i)
        gs.push_back(cogent::spawn([&] {
            timespec rel{5, 0};
            memcached_return_t rc;
            memcached_st* m = memcached_pool_fetch(pool.get(), &rel, &rc);
            if (!take(m, rc, "greenlet, round 2")) return;
            if (++holding == 2) greenlets_hold = true;
            if (!green_until([&] { return threads_fetching_again == kThreads; }))
                error("greenlet: the threads did not both ask for a handle");
            cogent::sleep(30ms);  // the threads are asleep in the kernel by now
            give_back(m, "greenlet, round 2");
        }));
    CHECK(cogent::joinall(gs, 30s).size() == gs.size());
    CHECK(green_until([&] { return threads_done == kThreads; }));
    stop = true;
    ticker.join();

    std::lock_guard lk(errors_mu);
    for (auto& e : errors) FAIL_CHECK(e);
    CHECK(peak_held == 2);
    CHECK(round1_ticks > 0);
    for (double w : greenlet_wait_ms) {
        CHECK(w >= 20);   // waited for a thread's release...
        CHECK(w < 4000);  // ...and was woken by it, not by the 5 s timeout
    }
    for (double w : thread_wait_ms) {
        CHECK(w >= 20);
        CHECK(w < 4000);
    }
    auto [gmin, gmax] = std::minmax_element(greenlet_wait_ms.begin(), greenlet_wait_ms.end());
    auto [tmin, tmax] = std::minmax_element(thread_wait_ms.begin(), thread_wait_ms.end());
    MESSAGE("libmemcached pool of 2, threads and greenlets: greenlets waited "
            << *gmin << ".." << *gmax << " ms for the threads' handles (ticker: " << round1_ticks
            << " ticks meanwhile), threads " << *tmin << ".." << *tmax << " ms for the greenlets'");
}
