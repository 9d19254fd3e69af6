// Resolve every name given on the command line at once, each in its own greenlet, and print
// "NAME ADDRESS" per name in the order given: the first IPv4 address, or the first address.
// Failed names get an error line on stderr and the exit status is 1. The lookups overlap:
// a hundred names take about as long as the slowest one.
//
//   build/examples/resolve localhost example.org ::1
//   COGENT_RESOLVER_SERVERS=127.0.0.1:5353 build/examples/resolve a.test b.test
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Outcome {
    std::string address;
    std::string error;
};

Outcome resolve_one(const std::string& name) {
    cogent::AddrInfoHints hints;
    hints.socktype = SOCK_STREAM;  // one entry per address
    try {
        auto results = cogent::getaddrinfo(name, {}, hints);
        for (const auto& r : results)
            if (r.family == AF_INET) return {r.address.host(), {}};
        return {results.at(0).address.host(), {}};
    } catch (const cogent::DnsError& e) {
        return {{}, e.what()};
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fprintf(stderr,
                     "usage: %s NAME...\nResolves the names concurrently; prints "
                     "\"NAME ADDRESS\" per name.\n",
                     argv[0]);
        return argc < 2 ? 2 : 0;
    }
    try {
        std::vector<cogent::Greenlet<Outcome>> lookups;
        for (int i = 1; i < argc; ++i)
            lookups.push_back(cogent::spawn(resolve_one, std::string(argv[i])));
        int failed = 0;
        for (std::size_t i = 0; i < lookups.size(); ++i) {
            Outcome o = lookups[i].get();
            if (o.error.empty()) {
                std::printf("%s %s\n", argv[i + 1], o.address.c_str());
            } else {
                std::fflush(stdout);
                std::fprintf(stderr, "resolve: %s: %s\n", argv[i + 1], o.error.c_str());
                ++failed;
            }
        }
        return failed ? 1 : 0;
    } catch (const std::exception& e) {  // a malformed COGENT_RESOLVER* setting, say
        std::fprintf(stderr, "resolve: %s\n", e.what());
        return 2;
    }
}
