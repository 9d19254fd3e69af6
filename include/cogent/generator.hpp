// Generator<T, S>: a producer function runs in its own raw greenlet and yields values to its
// consumer, which may send values back (Python generators, done with greenlet switches).
#pragma once

#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "cogent/exceptions.hpp"
#include "cogent/raw_greenlet.hpp"

namespace cogent {

template <class T, class S = void>
class Generator;

namespace detail {

template <class T, class S>
struct GeneratorState {
    using Sent = std::conditional_t<std::is_void_v<S>, std::monostate, S>;
    RawGreenlet producer;
    std::optional<T> value;    // the value the producer last yielded, until taken
    std::optional<Sent> sent;  // what send() hands to the pending yield
    bool running = false;      // resumed, and has neither yielded nor ended yet
    bool finished = false;
};

}  // namespace detail

// The producer's handle for yielding (passed to the producer function by reference). Use it
// only inside that producer.
template <class T, class S = void>
class Yielder {
public:
    Yielder(const Yielder&) = delete;
    Yielder& operator=(const Yielder&) = delete;

    // Hand `value` to the consumer and suspend until it resumes the generator. Returns what the
    // consumer passed to send() (std::nullopt for next() or iteration; nothing when S is void).
    // Throws GreenletExit when the generator is closed or destroyed (let it propagate: the
    // producer's destructors run), std::logic_error when called outside this producer.
    auto operator()(T value) {
        auto& s = *st_;
        if (detail::current() != s.producer.impl())
            throw std::logic_error("cogent: a Yielder used outside its generator's producer");
        s.value.emplace(std::move(value));
        s.producer.parent().switch_to();  // the parent is whoever resumed us
        if constexpr (std::is_void_v<S>)
            return;
        else
            return std::exchange(s.sent, std::nullopt);
    }
    // Same as operator().
    auto yield(T value) { return (*this)(std::move(value)); }

private:
    friend class Generator<T, S>;
    explicit Yielder(detail::GeneratorState<T, S>* st) noexcept : st_(st) {}
    detail::GeneratorState<T, S>* st_;
};

// A generator of T (move-only). The producer, `void producer(Yielder<T, S>& yield)`, runs in a
// new raw greenlet from the first next()/send()/begin(); each yield(v) suspends it and hands v
// to the consumer, which gets std::nullopt once the producer returns. S is what send() passes
// back (void: no send). An exception escaping the producer is rethrown by the call that
// resumed it; the generator is then done. Destroying a started generator, or close(), throws
// GreenletExit into the producer so its destructors run. The producer may block
// (sleep, I/O): the consumer simply waits. All calls belong to the creating thread, and only
// one greenlet may resume a generator at a time.
template <class T, class S>
class Generator {
    static_assert(!std::is_reference_v<T>, "Generator<T>: T must not be a reference");
    using State = detail::GeneratorState<T, S>;
    using Sent = typename State::Sent;

public:
    using value_type = T;
    using yielder = Yielder<T, S>;

    // A generator running producer(yield) (copied or moved in); nothing runs until the first
    // next(), send() or begin(). stack_size 0 means the default.
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Generator>>>
    explicit Generator(F&& producer, std::size_t stack_size = 0) : st_(std::make_unique<State>()) {
        static_assert(std::is_invocable_v<std::decay_t<F>&, Yielder<T, S>&>,
                      "Generator: the producer must be callable as producer(Yielder<T, S>&)");
        auto fn = std::make_shared<std::decay_t<F>>(std::forward<F>(producer));
        State* st = st_.get();
        st_->producer = RawGreenlet(
            [st, fn]() {
                Yielder<T, S> y(st);
                (*fn)(y);
            },
            RawGreenlet(), stack_size);
    }
    Generator(Generator&&) noexcept = default;
    Generator& operator=(Generator&& o) noexcept {
        if (this != &o) {
            destroy();
            st_ = std::move(o.st_);
        }
        return *this;
    }
    // Closes it (see close()); errors are reported on stderr, never thrown.
    ~Generator() { destroy(); }

    // Resume the producer; the next value, or std::nullopt once it has returned. Rethrows the
    // producer's exception. std::logic_error if the generator is already running.
    std::optional<T> next() {
        if (!advance(std::nullopt)) return std::nullopt;
        return take();
    }
    // Resume the producer so that its pending yield returns `value`; the next value, or
    // std::nullopt once it has returned. std::logic_error before the first next() (like
    // Python, a just-started generator has no yield to receive it).
    template <class V, class SS = S, class = std::enable_if_t<!std::is_void_v<SS>>>
    std::optional<T> send(V&& value) {
        if (!st_ || (!st_->producer.started() && !st_->finished))
            throw std::logic_error(
                "cogent: send() to a generator that has not started; call next() first");
        if (!advance(Sent(std::forward<V>(value)))) return std::nullopt;
        return take();
    }
    // Throw GreenletExit into a suspended producer and let it unwind; done() afterwards.
    // Rethrows another exception the producer raises while unwinding; std::runtime_error if it
    // yields again instead of ending.
    void close() {
        if (!st_) return;
        State& s = *st_;
        s.value.reset();
        if (!s.producer.started() || s.producer.dead()) {
            s.finished = true;
            return;
        }
        s.producer.set_parent(RawGreenlet::current());
        s.running = true;
        try {
            s.producer.throw_exception(GreenletExit());
        } catch (...) {
            settle();
            throw;
        }
        settle();
        if (!s.finished) throw std::runtime_error("cogent: generator ignored GreenletExit");
    }
    // True once the producer has ended (or the generator was closed).
    bool done() const noexcept { return !st_ || st_->finished; }

    // Input iterator over the remaining values (range-for). Dereferencing gives the value the
    // producer yielded; ++ resumes it.
    class iterator {
    public:
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        T& operator*() const { return *g_->st_->value; }
        T* operator->() const { return &*g_->st_->value; }
        iterator& operator++() {
            if (!g_->advance(std::nullopt)) g_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(const iterator& o) const { return g_ == o.g_; }

    private:
        friend class Generator;
        explicit iterator(Generator* g) : g_(g) {}
        Generator* g_ = nullptr;
    };
    // Resumes the producer unless a yielded value is still pending.
    iterator begin() {
        if (!st_ || (!st_->value && !advance(std::nullopt))) return iterator();
        return iterator(this);
    }
    iterator end() { return iterator(); }

private:
    // Switch into the producer; true if it yielded a value, false if it has ended.
    bool advance(std::optional<Sent> to_send) {
        if (!st_) throw std::logic_error("cogent: use of a moved-from Generator");
        State& s = *st_;
        if (s.finished) return false;
        if (s.running) throw std::logic_error("cogent: generator already executing");
        // Yields and the producer's end (value or exception) come back to the caller.
        s.producer.set_parent(RawGreenlet::current());
        s.sent = std::move(to_send);
        s.value.reset();
        s.running = true;
        try {
            s.producer.switch_to();
        } catch (...) {
            // The producer failed (it is dead), or we were interrupted (kill, Timeout) while it
            // was blocked: it stays running until it yields, so nobody resumes it meanwhile.
            settle();
            throw;
        }
        settle();
        if (s.finished) return false;
        if (!s.value)
            throw std::logic_error("cogent: a generator's producer switched out without yielding");
        return true;
    }
    void settle() noexcept {
        State& s = *st_;
        if (s.producer.dead()) {
            s.running = false;
            s.finished = true;
            s.value.reset();
        } else if (s.value) {
            s.running = false;
        }
    }
    std::optional<T> take() {
        std::optional<T> v(std::move(st_->value));
        st_->value.reset();
        return v;
    }
    void destroy() noexcept {
        if (!st_) return;
        try {
            close();
        } catch (...) {
            std::string what = "unknown exception";
            try {
                throw;
            } catch (const std::exception& e) {
                what = e.what();
            } catch (const BaseException& e) {
                what = e.what();
            } catch (...) {
            }
            std::fprintf(stderr, "cogent: destroying a generator: %s\n", what.c_str());
            // A producer that refused to end still points at its state: leave both alive.
            if (!st_->producer.dead()) (void)st_.release();
        }
        st_.reset();
    }

    std::unique_ptr<State> st_;
};

}  // namespace cogent
