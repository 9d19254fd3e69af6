// Generators on raw greenlets: the classic produce/consume coroutine with send(), then a lazy
// Fibonacci sequence consumed with range-for.
//
// Python original:
//     def consumer():
//         r = ''
//         while True:
//             n = yield r
//             if not n: return
//             print('[CONSUMER] Consuming %s...' % n)
//             r = '200 OK'
//     def produce(c):
//         c.send(None)
//         for n in range(1, 6):
//             print('[PRODUCER] Producing %s...' % n)
//             r = c.send(n)
//             print('[PRODUCER] Consumer return: %s' % r)
//         c.close()
#include <cogent/generator.hpp>
#include <cstdio>
#include <optional>
#include <string>

namespace {

// Receives ints through send(), yields a status string back.
cogent::Generator<std::string, int> consumer() {
    return cogent::Generator<std::string, int>([](cogent::Yielder<std::string, int>& yield) {
        std::string status;
        for (;;) {
            std::optional<int> n = yield(status);
            if (!n) return;
            std::printf("[CONSUMER] Consuming %d...\n", *n);
            status = "200 OK";
        }
    });
}

void produce(cogent::Generator<std::string, int>& c) {
    c.next();  // run to the first yield (Python: c.send(None))
    for (int n = 1; n <= 5; ++n) {
        std::printf("[PRODUCER] Producing %d...\n", n);
        std::optional<std::string> r = c.send(n);
        std::printf("[PRODUCER] Consumer return: %s\n", r ? r->c_str() : "(ended)");
    }
    c.close();
}

cogent::Generator<long long> fibonacci() {
    return cogent::Generator<long long>([](auto& yield) {
        long long a = 0, b = 1;
        for (;;) {
            yield(a);
            long long next = a + b;
            a = b;
            b = next;
        }
    });
}

}  // namespace

int main() {
    auto c = consumer();
    produce(c);

    std::printf("fibonacci:");
    for (long long v : fibonacci()) {
        if (v > 1000) break;  // leaving the loop destroys the generator, unwinding its producer
        std::printf(" %lld", v);
    }
    std::printf("\n");
}
