// The fake DNS server (see dns_server.hpp). The server thread runs its own cogent hub: one
// greenlet receives UDP datagrams, one accepts TCP connections, one reads each connection, and
// each delayed answer gets its own greenlet (sleep, then send), so delays overlap instead of
// adding up. Replies are built under the mutex at arrival, from the zone as it is then.
#include "dns_server.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>

namespace cogent_test {

namespace {

using std::chrono::milliseconds;

constexpr std::uint32_t kTtl = 60;
constexpr std::size_t kUdpMax = 512;  // without EDNS, a UDP reply must fit in 512 bytes
constexpr int kMaxCnameDepth = 8;

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

// A zone key: lowercase, no trailing dot; std::invalid_argument when not a valid domain name.
std::string normalize(std::string_view name, const char* what) {
    auto bad = [&](const char* why) {
        return std::invalid_argument(std::string("DnsServer::") + what + ": '" + std::string(name) +
                                     "' is not a domain name (" + why + ")");
    };
    std::string key(name);
    if (!key.empty() && key.back() == '.') key.pop_back();
    if (key.empty()) throw bad("empty");
    if (key.size() > 253) throw bad("longer than 253 bytes");
    std::size_t label = 0;
    for (char& c : key) {
        c = lower_ascii(c);
        if (c == '.') {
            if (label == 0) throw bad("empty label");
            label = 0;
        } else if (++label > 63) {
            throw bad("label longer than 63 bytes");
        }
    }
    if (label == 0) throw bad("empty label");
    return key;
}

std::uint32_t fnv1a(std::string_view s) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : s) h = (h ^ c) * 16777619u;
    return h;
}

bool is_generated(const std::string& key) {
    static constexpr std::string_view suffix = ".gen.test";
    return key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(),
                                                     suffix.data(), suffix.size()) == 0;
}

std::array<unsigned char, 4> made_up_a_bytes(const std::string& key) {
    const std::uint32_t h = fnv1a(key);
    // 10.x.y.z with z in 1..254: never a network or broadcast-looking address.
    return {10, static_cast<unsigned char>(h >> 16), static_cast<unsigned char>(h >> 8),
            static_cast<unsigned char>(1 + (h & 0xff) % 254)};
}

std::array<unsigned char, 16> made_up_aaaa_bytes(const std::string& key) {
    const std::uint32_t h = fnv1a(key);
    std::array<unsigned char, 16> b{};
    b[0] = 0xfd;
    b[12] = static_cast<unsigned char>(h >> 24);
    b[13] = static_cast<unsigned char>(h >> 16);
    b[14] = static_cast<unsigned char>(h >> 8);
    b[15] = static_cast<unsigned char>(h | 1);  // never fd00::
    return b;
}

std::string ntop(int family, const void* bytes) {
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, bytes, buf, sizeof buf)) return "?";
    return buf;
}

const char* type_name(std::uint16_t t) {
    switch (t) {
        case 1:
            return "A";
        case 2:
            return "NS";
        case 5:
            return "CNAME";
        case 6:
            return "SOA";
        case 12:
            return "PTR";
        case 15:
            return "MX";
        case 16:
            return "TXT";
        case 28:
            return "AAAA";
        case 33:
            return "SRV";
        case 255:
            return "ANY";
        default:
            return nullptr;
    }
}

void put16(std::string& out, std::uint16_t v) {
    out.push_back(char(v >> 8));
    out.push_back(char(v & 0xff));
}

void put32(std::string& out, std::uint32_t v) {
    put16(out, std::uint16_t(v >> 16));
    put16(out, std::uint16_t(v & 0xffff));
}

// A zone key written in full (uncompressed) wire form.
void put_name(std::string& out, const std::string& key) {
    std::size_t start = 0;
    while (start < key.size()) {
        std::size_t dot = key.find('.', start);
        if (dot == std::string::npos) dot = key.size();
        out.push_back(char(dot - start));
        out.append(key, start, dot - start);
        start = dot + 1;
    }
    out.push_back('\0');
}

struct Query {
    std::uint16_t id = 0;
    bool rd = false;
    std::string question;  // the question section as received (name, type, class)
    std::string key;       // the name, lowercased, no trailing dot ("" for the root)
    std::uint16_t qtype = 0;
};

// A standard query with one question, or nothing (garbage, a response, another opcode).
std::optional<Query> parse_query(std::string_view m) {
    auto u8 = [&](std::size_t i) { return static_cast<unsigned char>(m[i]); };
    if (m.size() < 12) return std::nullopt;
    if (u8(2) & 0x80) return std::nullopt;                // QR: a response, not a query
    if (((u8(2) >> 3) & 0x0f) != 0) return std::nullopt;  // opcode other than QUERY
    if (u8(4) != 0 || u8(5) != 1) return std::nullopt;    // QDCOUNT must be 1
    Query q;
    q.id = std::uint16_t(u8(0) << 8 | u8(1));
    q.rd = u8(2) & 0x01;
    std::size_t i = 12;
    for (;;) {
        if (i >= m.size()) return std::nullopt;
        const unsigned len = u8(i);
        if (len == 0) break;
        if (len > 63) return std::nullopt;  // compression pointers have no place in a question
        if (i + 1 + len > m.size() || i + 1 + len - 12 > 254) return std::nullopt;
        if (!q.key.empty()) q.key.push_back('.');
        for (std::size_t k = 0; k < len; ++k) q.key.push_back(lower_ascii(m[i + 1 + k]));
        i += 1 + len;
    }
    ++i;  // the root label
    if (i + 4 > m.size()) return std::nullopt;
    q.qtype = std::uint16_t(u8(i) << 8 | u8(i + 1));
    q.question.assign(m.substr(12, i + 4 - 12));
    return q;  // answer/authority/additional sections (EDNS OPT) are ignored
}

// The header of a reply to q: ID and RD copied, QR and RA set, QDCOUNT 1.
std::string header(const Query& q, unsigned rcode, bool tc, std::uint16_t ancount) {
    std::string h;
    put16(h, q.id);
    h.push_back(char(0x80 | (tc ? 0x02 : 0) | (q.rd ? 0x01 : 0)));
    h.push_back(char(0x80 | (rcode & 0x0f)));
    put16(h, 1);
    put16(h, ancount);
    put16(h, 0);
    put16(h, 0);
    return h;
}

struct Node {
    std::vector<std::array<unsigned char, 4>> a;
    std::vector<std::array<unsigned char, 16>> aaaa;
    std::vector<std::string> ptr;  // target keys
    std::string cname;             // target key, or empty
};

struct Record {
    std::string owner;  // key
    std::uint16_t type;
    std::string rdata;
};

struct Plan {
    std::string reply;  // empty: do not answer
    milliseconds delay{0};
};

}  // namespace

struct DnsServer::Zone {
    std::map<std::string, Node> nodes;

    // Records for key/qtype (following CNAMEs); false when the name does not exist.
    bool resolve(const std::string& key, std::uint16_t qtype, std::vector<Record>& out) const {
        std::string cur = key;
        for (int depth = 0; depth <= kMaxCnameDepth; ++depth) {
            auto it = nodes.find(cur);
            if (it != nodes.end()) {
                const Node& n = it->second;
                if (!n.cname.empty()) {
                    std::string rd;
                    put_name(rd, n.cname);
                    out.push_back({cur, dns_type::CNAME, std::move(rd)});
                    if (qtype == dns_type::CNAME) return true;
                    cur = n.cname;
                    continue;
                }
                const bool any = qtype == dns_type::ANY;
                if (any || qtype == dns_type::A)
                    for (auto& b : n.a)
                        out.push_back({cur, dns_type::A, std::string(b.begin(), b.end())});
                if (any || qtype == dns_type::AAAA)
                    for (auto& b : n.aaaa)
                        out.push_back({cur, dns_type::AAAA, std::string(b.begin(), b.end())});
                if (any || qtype == dns_type::PTR)
                    for (auto& t : n.ptr) {
                        std::string rd;
                        put_name(rd, t);
                        out.push_back({cur, dns_type::PTR, std::move(rd)});
                    }
                return true;
            }
            if (is_generated(cur)) {
                const bool any = qtype == dns_type::ANY;
                if (any || qtype == dns_type::A) {
                    auto b = made_up_a_bytes(cur);
                    out.push_back({cur, dns_type::A, std::string(b.begin(), b.end())});
                }
                if (any || qtype == dns_type::AAAA) {
                    auto b = made_up_aaaa_bytes(cur);
                    out.push_back({cur, dns_type::AAAA, std::string(b.begin(), b.end())});
                }
                return true;
            }
            // A CNAME pointing nowhere: NOERROR with the CNAME chain only.
            return depth > 0;
        }
        return true;  // chain too long (or a loop): what was collected
    }
};

struct DnsServer::Shared {
    mutable std::mutex mu;
    Zone zone;
    std::map<std::string, DnsBehavior> behaviors;
    std::map<std::pair<std::string, std::uint16_t>, DnsBehavior> typed_behaviors;
    std::map<std::string, milliseconds> delays;
    milliseconds delay{0};

    std::size_t udp = 0, tcp = 0, garbage = 0, connections = 0, replies = 0;
    std::map<std::string, std::size_t> per_name;
    std::vector<std::string> log;

    // Thread control: the server thread's hub and stop event, published while it serves.
    std::optional<cogent::Hub> hub;
    cogent::Event* stop_ev = nullptr;

    // Count the message and decide the reply; nothing for garbage.
    std::optional<Plan> handle(std::string_view msg, bool over_tcp) {
        std::optional<Query> q = parse_query(msg);
        std::lock_guard<std::mutex> lk(mu);
        if (!q) {
            ++garbage;
            return std::nullopt;
        }
        ++(over_tcp ? tcp : udp);
        ++per_name[q->key];
        const char* tn = type_name(q->qtype);
        log.push_back(std::string(over_tcp ? "tcp " : "udp ") +
                      (tn ? std::string(tn) : "TYPE" + std::to_string(q->qtype)) + " " +
                      (q->key.empty() ? std::string(".") : q->key));

        Plan p;
        auto d = delays.find(q->key);
        p.delay = d != delays.end() ? d->second : delay;
        DnsBehavior behavior = DnsBehavior::answer;
        if (auto t = typed_behaviors.find({q->key, q->qtype}); t != typed_behaviors.end())
            behavior = t->second;
        else if (auto b = behaviors.find(q->key); b != behaviors.end())
            behavior = b->second;
        switch (behavior) {
            case DnsBehavior::drop:
                return p;
            case DnsBehavior::nxdomain:
                p.reply = header(*q, 3, false, 0) + q->question;
                return p;
            case DnsBehavior::servfail:
                p.reply = header(*q, 2, false, 0) + q->question;
                return p;
            case DnsBehavior::refused:
                p.reply = header(*q, 5, false, 0) + q->question;
                return p;
            case DnsBehavior::malformed:
                // Promises one answer, then stops inside its TYPE field.
                p.reply = header(*q, 0, false, 1) + q->question + std::string("\xc0\x0c\x00", 3);
                return p;
            case DnsBehavior::truncate:
                if (!over_tcp) {
                    p.reply = header(*q, 0, true, 0) + q->question;
                    return p;
                }
                break;
            case DnsBehavior::answer:
                break;
        }
        std::vector<Record> rrs;
        const bool exists = zone.resolve(q->key, q->qtype, rrs);
        p.reply = header(*q, exists ? 0 : 3, false, std::uint16_t(rrs.size())) + q->question;
        for (const Record& r : rrs) {
            if (r.owner == q->key) {
                put16(p.reply, 0xc00c);  // the question name, at offset 12
            } else {
                put_name(p.reply, r.owner);
            }
            put16(p.reply, r.type);
            put16(p.reply, 1);  // IN
            put32(p.reply, kTtl);
            put16(p.reply, std::uint16_t(r.rdata.size()));
            p.reply += r.rdata;
        }
        if (!over_tcp && p.reply.size() > kUdpMax) p.reply = header(*q, 0, true, 0) + q->question;
        return p;
    }

    // A reply is counted before it goes out, so a client that has received it sees it counted
    // (the server runs in its own thread); a send that fails takes it back.
    void sending() {
        std::lock_guard<std::mutex> lk(mu);
        ++replies;
    }
    void send_failed() {
        std::lock_guard<std::mutex> lk(mu);
        --replies;
    }
};

namespace {

using SharedPtr = std::shared_ptr<DnsServer::Shared>;

bool is_exit_error(const std::system_error& e) { return e.code().value() == EBADF; }

// One TCP connection: replies from several greenlets go out whole, one at a time.
struct Conn {
    cogent::Socket sock;
    cogent::Lock write_lock;
};

// Runs `send` (one reply) under `lock`, counting the reply first (Shared::sending). A send that
// fails means the client went away (EPIPE, ECONNRESET, ...): nobody to answer, nothing counted.
template <class Send>
void send_counted(const SharedPtr& sh, cogent::Lock& lock, Send&& send) {
    std::lock_guard<cogent::Lock> lk(lock);
    sh->sending();
    try {
        send();
    } catch (const std::system_error&) {
        sh->send_failed();
    } catch (...) {  // killed at shutdown
        sh->send_failed();
        throw;
    }
}

void send_tcp(const SharedPtr& sh, Conn& c, const std::string& reply) {
    std::string framed;
    put16(framed, std::uint16_t(reply.size()));
    framed += reply;
    send_counted(sh, c.write_lock, [&] { c.sock.sendall(framed); });
}

void send_udp(const SharedPtr& sh, cogent::Socket& udp, cogent::Lock& lock,
              const std::string& reply, const cogent::Address& to) {
    send_counted(sh, lock, [&] { udp.sendto(reply, to); });
}

void serve_connection(SharedPtr sh, cogent::Group& group, std::shared_ptr<Conn> conn) {
    std::string buf;
    char chunk[4096];
    for (;;) {
        std::size_t n = 0;
        try {
            n = conn->sock.recv(chunk, sizeof chunk);
        } catch (const std::system_error&) {
            return;  // reset by the peer, or closed at shutdown
        }
        if (n == 0) return;  // replies still pending keep the socket open until sent
        buf.append(chunk, n);
        std::size_t pos = 0;
        while (buf.size() - pos >= 2) {
            const std::size_t len = std::size_t(static_cast<unsigned char>(buf[pos])) << 8 |
                                    static_cast<unsigned char>(buf[pos + 1]);
            if (buf.size() - pos - 2 < len) break;
            std::optional<Plan> p = sh->handle(std::string_view(buf).substr(pos + 2, len), true);
            pos += 2 + len;
            if (!p || p->reply.empty()) continue;  // garbage or drop: stay open and silent
            if (p->delay.count() == 0) {
                send_tcp(sh, *conn, p->reply);
            } else {
                group.spawn([sh, conn, delay = p->delay, reply = std::move(p->reply)] {
                    cogent::sleep(delay);
                    send_tcp(sh, *conn, reply);
                });
            }
        }
        buf.erase(0, pos);
    }
}

void accept_loop(SharedPtr sh, cogent::Group& group, cogent::Socket& listener) {
    for (;;) {
        std::pair<cogent::Socket, cogent::Address> accepted;
        try {
            accepted = listener.accept();
        } catch (const std::system_error& e) {
            if (is_exit_error(e)) return;
            cogent::sleep(milliseconds(10));  // EMFILE and the like: try again later
            continue;
        }
        {
            std::lock_guard<std::mutex> lk(sh->mu);
            ++sh->connections;
        }
        auto conn = std::make_shared<Conn>();
        conn->sock = std::move(accepted.first);
        group.spawn([sh, &group, conn]() mutable {
            serve_connection(std::move(sh), group, std::move(conn));
        });
    }
}

void udp_loop(SharedPtr sh, cogent::Group& group, cogent::Socket& udp, cogent::Lock& lock) {
    std::string buf(65536, '\0');
    for (;;) {
        std::pair<std::size_t, cogent::Address> got;
        try {
            got = udp.recvfrom(buf.data(), buf.size());
        } catch (const std::system_error& e) {
            if (is_exit_error(e)) return;
            cogent::sleep(milliseconds(1));  // a transient error: do not spin on it
            continue;
        }
        std::optional<Plan> p = sh->handle(std::string_view(buf.data(), got.first), false);
        if (!p || p->reply.empty()) continue;
        if (p->delay.count() == 0) {
            send_udp(sh, udp, lock, p->reply, got.second);
        } else {
            group.spawn(
                [sh, &udp, &lock, to = got.second, delay = p->delay, reply = std::move(p->reply)] {
                    cogent::sleep(delay);
                    send_udp(sh, udp, lock, reply, to);
                });
        }
    }
}

// Bind UDP to an OS-chosen port, then TCP to the same one (retrying when TCP's is taken).
std::uint16_t bind_pair(const std::string& host, std::uint16_t fixed, cogent::Socket& udp,
                        cogent::Socket& tcp) {
    const cogent::Address any_port(host, fixed);
    for (int attempt = 0;; ++attempt) {
        udp = cogent::Socket(any_port.family(), SOCK_DGRAM);
        udp.bind(any_port);
        // 200 queries arriving at once must not overflow the receive buffer. The larger,
        // forced size needs CAP_NET_ADMIN; without it the sysctl's limit applies.
        const int want = 4 << 20;
        if (::setsockopt(udp.fileno(), SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0)
            ::setsockopt(udp.fileno(), SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
        const std::uint16_t port = udp.local_address().port();
        tcp = cogent::Socket(any_port.family(), SOCK_STREAM);
        tcp.set_option(SOL_SOCKET, SO_REUSEADDR, 1);
        try {
            tcp.bind(cogent::Address(host, port));
        } catch (const std::system_error& e) {
            if (fixed || e.code().value() != EADDRINUSE || attempt >= 100) throw;
            continue;
        }
        tcp.listen(128);
        return port;
    }
}

void thread_main(SharedPtr sh, std::string host, std::uint16_t fixed,
                 std::promise<std::uint16_t> ready) {
    bool started = false;
    try {
        cogent::Socket udp, tcp;
        const std::uint16_t port = bind_pair(host, fixed, udp, tcp);
        cogent::Event stop;
        cogent::Lock udp_lock;
        {
            std::lock_guard<std::mutex> lk(sh->mu);
            sh->hub = cogent::get_hub();
            sh->stop_ev = &stop;
        }
        struct Unpublish {
            SharedPtr& sh;
            ~Unpublish() {
                std::lock_guard<std::mutex> lk(sh->mu);
                sh->hub.reset();
                sh->stop_ev = nullptr;
            }
        } unpublish{sh};
        {
            cogent::Group group;
            group.spawn([&] { udp_loop(sh, group, udp, udp_lock); });
            group.spawn([&] { accept_loop(sh, group, tcp); });
            ready.set_value(port);
            started = true;
            // The UDP and accept loops always wait on their fds, so the loop stays alive.
            std::exception_ptr err;
            try {
                stop.wait();
            } catch (...) {
                err = std::current_exception();
            }
            group.kill();  // whatever happened, nothing of ours may outlive the thread
            if (err) std::rethrow_exception(err);
        }
    } catch (...) {
        if (!started) {
            ready.set_exception(std::current_exception());
            return;
        }
        try {
            std::rethrow_exception(std::current_exception());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "DnsServer thread failed: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "DnsServer thread failed\n");
        }
    }
}

}  // namespace

DnsServer::DnsServer(std::string host, std::uint16_t port_wanted)
    : host_(std::move(host)), sh_(std::make_shared<Shared>()) {
    // Validate on the caller's thread, so that a bad host is a plain invalid_argument.
    const cogent::Address check(host_, 0);
    if (check.family() != AF_INET && check.family() != AF_INET6)
        throw std::invalid_argument("DnsServer: '" + host_ + "' is not an IPv4 or IPv6 address");
    std::promise<std::uint16_t> ready;
    std::future<std::uint16_t> port = ready.get_future();
    thread_ = std::thread(thread_main, sh_, host_, port_wanted, std::move(ready));
    try {
        port_ = port.get();
    } catch (...) {
        thread_.join();
        throw;
    }
}

DnsServer::~DnsServer() {
    {
        std::lock_guard<std::mutex> lk(sh_->mu);
        if (sh_->hub) {
            sh_->hub->run_callback_threadsafe([sh = sh_] {
                std::lock_guard<std::mutex> lk2(sh->mu);
                if (sh->stop_ev) sh->stop_ev->set();
            });
        }
    }
    thread_.join();
}

std::string DnsServer::server_spec() const {
    if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
    return host_ + ":" + std::to_string(port_);
}

void DnsServer::add_a(std::string name, std::string ipv4) {
    std::string key = normalize(name, "add_a");
    std::array<unsigned char, 4> b{};
    if (inet_pton(AF_INET, ipv4.c_str(), b.data()) != 1)
        throw std::invalid_argument("DnsServer::add_a: '" + ipv4 + "' is not an IPv4 address");
    std::lock_guard<std::mutex> lk(sh_->mu);
    auto& v = sh_->zone.nodes[key].a;
    if (std::find(v.begin(), v.end(), b) == v.end()) v.push_back(b);
}

void DnsServer::add_aaaa(std::string name, std::string ipv6) {
    std::string key = normalize(name, "add_aaaa");
    std::array<unsigned char, 16> b{};
    if (inet_pton(AF_INET6, ipv6.c_str(), b.data()) != 1)
        throw std::invalid_argument("DnsServer::add_aaaa: '" + ipv6 + "' is not an IPv6 address");
    std::lock_guard<std::mutex> lk(sh_->mu);
    auto& v = sh_->zone.nodes[key].aaaa;
    if (std::find(v.begin(), v.end(), b) == v.end()) v.push_back(b);
}

void DnsServer::add_cname(std::string alias, std::string target) {
    std::string key = normalize(alias, "add_cname");
    std::string to = normalize(target, "add_cname");
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->zone.nodes[key].cname = std::move(to);
}

std::string DnsServer::reverse_name(std::string_view ip) {
    const std::string s(ip);
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (inet_pton(AF_INET, s.c_str(), b) == 1) {
        return std::to_string(b[3]) + "." + std::to_string(b[2]) + "." + std::to_string(b[1]) +
               "." + std::to_string(b[0]) + ".in-addr.arpa";
    }
    if (inet_pton(AF_INET6, s.c_str(), b) == 1) {
        std::string out;
        for (int i = 15; i >= 0; --i) {
            out.push_back(hex[b[i] & 0x0f]);
            out.push_back('.');
            out.push_back(hex[b[i] >> 4]);
            out.push_back('.');
        }
        return out + "ip6.arpa";
    }
    throw std::invalid_argument("DnsServer: '" + s + "' is not an IPv4 or IPv6 address");
}

void DnsServer::add_ptr(std::string ip, std::string name) {
    std::string owner = reverse_name(ip);
    std::string target = normalize(name, "add_ptr");
    std::lock_guard<std::mutex> lk(sh_->mu);
    auto& v = sh_->zone.nodes[owner].ptr;
    if (std::find(v.begin(), v.end(), target) == v.end()) v.push_back(std::move(target));
}

void DnsServer::set_behavior(std::string name, DnsBehavior b) {
    std::string key = normalize(name, "set_behavior");
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->behaviors[key] = b;
}

void DnsServer::set_behavior(std::string name, std::uint16_t qtype, DnsBehavior b) {
    std::string key = normalize(name, "set_behavior");
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->typed_behaviors[{key, qtype}] = b;
}

void DnsServer::set_delay(std::chrono::milliseconds d) {
    if (d.count() < 0)
        throw std::invalid_argument("DnsServer::set_delay: negative delay " +
                                    std::to_string(d.count()) + " ms");
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->delay = d;
}

void DnsServer::set_delay(std::string name, std::chrono::milliseconds d) {
    std::string key = normalize(name, "set_delay");
    if (d.count() < 0)
        throw std::invalid_argument("DnsServer::set_delay: negative delay " +
                                    std::to_string(d.count()) + " ms for '" + name + "'");
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->delays[key] = d;
}

std::string DnsServer::made_up_a(std::string_view name) {
    auto b = made_up_a_bytes(normalize(name, "made_up_a"));
    return ntop(AF_INET, b.data());
}

std::string DnsServer::made_up_aaaa(std::string_view name) {
    auto b = made_up_aaaa_bytes(normalize(name, "made_up_aaaa"));
    return ntop(AF_INET6, b.data());
}

std::size_t DnsServer::udp_queries() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->udp;
}

std::size_t DnsServer::tcp_queries() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->tcp;
}

std::size_t DnsServer::queries_for(std::string name) const {
    std::string key = normalize(name, "queries_for");
    std::lock_guard<std::mutex> lk(sh_->mu);
    auto it = sh_->per_name.find(key);
    return it == sh_->per_name.end() ? 0 : it->second;
}

std::vector<std::string> DnsServer::query_log() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->log;
}

std::size_t DnsServer::garbage_queries() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->garbage;
}

std::size_t DnsServer::tcp_connections() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->connections;
}

std::size_t DnsServer::replies_sent() const {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->replies;
}

void DnsServer::reset_counters() {
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->udp = sh_->tcp = sh_->garbage = sh_->connections = sh_->replies = 0;
    sh_->per_name.clear();
    sh_->log.clear();
}

}  // namespace cogent_test
