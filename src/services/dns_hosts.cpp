// The hosts file (/etc/hosts or Options::hosts_file) and the "localhost" names, answered here
// rather than by c-ares (its "lookups" is set to DNS only), so that every lookup reads the
// hosts file the same way and tests can point at another.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string normalize_name(std::string_view s) {
    if (s.size() > 1 && s.back() == '.') s.remove_suffix(1);
    return lower(s);
}

std::string hosts_path(const Resolver::Options& o) {
    return o.hosts_file.empty() ? "/etc/hosts" : o.hosts_file;
}

namespace {

struct HostsLine {
    RawAddr addr;
    std::vector<std::string> names;  // as written; names[0] is the canonical name
    std::vector<std::string> lowered;
};

// /etc/hosts, parsed, re-read when its inode, size or mtime changes (glibc re-reads it on every
// lookup). Shared by the resolvers of every thread.
class HostsFile {
public:
    std::vector<HostsLine> lines(const std::string& path) {
        struct stat st {};
        std::lock_guard<std::mutex> lk(mu_);
        Cached& c = files_[path];
        if (::stat(path.c_str(), &st) != 0) {
            c = Cached{};
            return {};
        }
        if (c.loaded && c.ino == st.st_ino && c.size == st.st_size &&
            c.mtime.tv_sec == st.st_mtim.tv_sec && c.mtime.tv_nsec == st.st_mtim.tv_nsec)
            return c.lines;
        c = Cached{};
        c.loaded = true;
        c.ino = st.st_ino;
        c.size = st.st_size;
        c.mtime = st.st_mtim;
        std::ifstream in(path);
        std::string line;
        while (std::getline(in, line)) {
            if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
            std::istringstream ss(line);
            std::string addr, name;
            if (!(ss >> addr)) continue;
            auto raw = parse_numeric(addr);
            if (!raw) continue;
            HostsLine hl;
            hl.addr = *raw;
            while (ss >> name) {
                hl.lowered.push_back(lower(name));
                hl.names.push_back(std::move(name));
            }
            if (!hl.names.empty()) c.lines.push_back(std::move(hl));
        }
        return c.lines;
    }

private:
    struct Cached {
        bool loaded = false;
        ino_t ino = 0;
        off_t size = 0;
        timespec mtime{};
        std::vector<HostsLine> lines;
    };
    std::mutex mu_;
    std::unordered_map<std::string, Cached> files_;
};

HostsFile& hosts_file() {
    static HostsFile* h = new HostsFile;  // never destroyed: usable from any thread at exit
    return *h;
}

}  // namespace

Answer hosts_lookup(const std::string& path, const std::string& name, bool want4, bool want6) {
    Answer ans;
    if (path == "-") return ans;
    for (const HostsLine& hl : hosts_file().lines(path)) {
        auto it = std::find(hl.lowered.begin(), hl.lowered.end(), name);
        if (it == hl.lowered.end()) continue;
        if (!ans.found) {
            ans.found = true;
            ans.canon = hl.names[0];
            for (std::size_t i = 1; i < hl.names.size(); ++i) ans.aliases.push_back(hl.names[i]);
        }
        if ((hl.addr.family == AF_INET && want4) || (hl.addr.family == AF_INET6 && want6))
            if (std::find(ans.addrs.begin(), ans.addrs.end(), hl.addr) == ans.addrs.end())
                ans.addrs.push_back(hl.addr);
    }
    return ans;
}

bool hosts_reverse(const std::string& path, const RawAddr& addr, HostEnt& out) {
    if (path == "-") return false;
    for (const HostsLine& hl : hosts_file().lines(path)) {
        if (!(hl.addr == addr)) continue;
        for (const auto& n : hl.names) {
            if (out.name.empty())
                out.name = n;
            else if (n != out.name &&
                     std::find(out.aliases.begin(), out.aliases.end(), n) == out.aliases.end())
                out.aliases.push_back(n);
        }
    }
    return !out.name.empty();
}

bool is_localhost(const std::string& name) {
    return name == "localhost" ||
           (name.size() > 10 && name.compare(name.size() - 10, 10, ".localhost") == 0);
}

Answer localhost_answer(const std::string& name, bool want4, bool want6) {
    Answer ans;
    ans.found = true;
    ans.canon = name;
    static const unsigned char l4[4] = {127, 0, 0, 1};
    static const unsigned char l6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (want6) ans.addrs.push_back(v6(l6));
    if (want4) ans.addrs.push_back(v4(l4));
    return ans;
}

}  // namespace cogent::detail::dns
