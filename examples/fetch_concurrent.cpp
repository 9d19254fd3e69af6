// Fetching from many connections at once: the same 40 requests to a slow local server, first
// one after another, then each in its own greenlet. Straight-line blocking code; the waits
// overlap because every socket call parks only its own greenlet.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int kRequests = 40;
constexpr auto kServerDelay = 50ms;

// One connection of the slow server: answer each request line after kServerDelay.
void handle(cogent::Socket conn) {
    cogent::SocketReader reader(conn);
    for (;;) {
        std::string line = reader.readline();
        if (line.empty()) return;  // the client closed
        cogent::sleep(kServerDelay);
        conn.sendall("reply to " + line);
    }
}

// The server's accept loop: a greenlet per connection, until the listener is closed.
void serve(cogent::Socket& listener, cogent::Group& handlers) {
    try {
        for (;;) handlers.spawn(handle, listener.accept().first);
    } catch (const std::system_error&) {
        // EBADF: main closed the listener to stop us.
    }
}

// One request on its own connection: connect, send a line, read the reply line.
std::string fetch(const cogent::Address& server, int i) {
    cogent::Socket s = cogent::create_connection(server.host(), server.port(), 5s);
    s.sendall("request " + std::to_string(i) + "\n");
    cogent::SocketReader reader(s);
    return reader.readline();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
    cogent::Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(cogent::Address("127.0.0.1", 0));
    listener.listen();
    const cogent::Address where = listener.local_address();
    cogent::Group handlers;
    auto server = cogent::spawn(serve, std::ref(listener), std::ref(handlers));
    std::printf("server on %s answers each request after %lld ms\n", where.to_string().c_str(),
                static_cast<long long>(kServerDelay.count()));

    auto t0 = std::chrono::steady_clock::now();
    int ok = 0;
    for (int i = 0; i < kRequests; ++i)
        ok += fetch(where, i) == "reply to request " + std::to_string(i) + "\n";
    const double sequential = seconds_since(t0);
    std::printf("sequential: %d requests in %.3f s (%d ok)\n", kRequests, sequential, ok);

    t0 = std::chrono::steady_clock::now();
    std::vector<cogent::Greenlet<std::string>> fetches;
    for (int i = 0; i < kRequests; ++i) fetches.push_back(cogent::spawn(fetch, where, i));
    cogent::joinall(fetches, {}, true);
    const double concurrent = seconds_since(t0);
    ok = 0;
    for (int i = 0; i < kRequests; ++i)
        ok += fetches[std::size_t(i)].get() == "reply to request " + std::to_string(i) + "\n";
    std::printf("concurrent: %d requests in %.3f s (%d ok), one greenlet each\n", kRequests,
                concurrent, ok);
    std::printf("speed-up: %.1fx\n", sequential / concurrent);

    listener.close();  // wakes the accept loop with EBADF
    server.join();
    handlers.join();
    return ok == kRequests ? 0 : 1;
}
