// Intrusive lists shared by the hub's callback queue and every wait list.
// Internal: visible only because templates (Greenlet<T>, AsyncResult<T>, Queue<T>) embed them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cogent/detail/export.hpp"

namespace cogent::detail {

// A node in a circular doubly-linked list with a sentinel. O(1) unlink from anywhere, so a
// waiter or a queued callback that lives on a greenlet's stack can always remove itself when
// that stack unwinds (kill, Timeout), and nothing is left pointing at dead memory.
struct COGENT_INTERNAL_API ListNode {
    ListNode* prev = nullptr;
    ListNode* next = nullptr;
    bool linked() const noexcept { return next != nullptr; }
    void unlink() noexcept {
        if (next) {
            prev->next = next;
            next->prev = prev;
            prev = next = nullptr;
        }
    }
};

// Sentinel-headed FIFO of ListNode-derived T. Not copyable, not movable (nodes point at it).
template <class T>
class List {
public:
    List() noexcept { head_.prev = head_.next = &head_; }
    List(const List&) = delete;
    List& operator=(const List&) = delete;

    bool empty() const noexcept { return head_.next == &head_; }
    void push_back(T* n) noexcept {
        ListNode* node = n;
        node->prev = head_.prev;
        node->next = &head_;
        head_.prev->next = node;
        head_.prev = node;
    }
    T* front() const noexcept { return empty() ? nullptr : static_cast<T*>(head_.next); }
    T* pop_front() noexcept {
        if (empty()) return nullptr;
        ListNode* n = head_.next;
        n->unlink();
        return static_cast<T*>(n);
    }
    // Move every node of `other` to the end of this list.
    void splice_back(List& other) noexcept {
        if (other.empty()) return;
        ListNode* first = other.head_.next;
        ListNode* last = other.head_.prev;
        other.head_.prev = other.head_.next = &other.head_;
        first->prev = head_.prev;
        head_.prev->next = first;
        last->next = &head_;
        head_.prev = last;
    }
    std::size_t size() const noexcept {
        std::size_t n = 0;
        for (ListNode* p = head_.next; p != &head_; p = p->next) ++n;
        return n;
    }
    template <class F>
    void for_each(F&& f) const {
        for (ListNode* p = head_.next; p != &head_;) {
            ListNode* nx = p->next;
            f(static_cast<T*>(p));
            p = nx;
        }
    }

private:
    ListNode head_;
};

// One unit of hub work. `fn` runs on the hub greenlet; `discard` (optional) is called instead
// when the hub is torn down with the callback still queued, to release what it holds.
struct COGENT_INTERNAL_API Callback : ListNode {
    void (*fn)(Callback*) = nullptr;
    void (*discard)(Callback*) = nullptr;
};

// A party waiting on a Linkable: a parked greenlet, an iwait registration or a rawlink.
// `on_wake` runs on the hub after the node has been unlinked from its list. `seq` is stamped by
// WaitList::push_back: the order in which the node joined its list.
// `on_abandon` (optional) runs instead when the object is destroyed with the node still linked
// (abandon_all); the node is unlinked first. `kind` names the object ("Event", "Queue", ...), or
// is null when the wait is over anyway (a Channel putter whose item was taken): the party must
// then be woken as if normally. Either way it must not touch the object again, nor switch: it
// runs in the destroyer's frame, which may be any greenlet.
struct COGENT_INTERNAL_API WaitNode : ListNode {
    void (*on_wake)(WaitNode*) = nullptr;
    void (*on_abandon)(WaitNode*, const char* kind) noexcept = nullptr;
    std::uint64_t seq = 0;
};

// A FIFO of WaitNodes that numbers them as they join, so a wake-up round can tell the nodes
// that were there when it began from those that came later (Linkable::run_notify). The numbers
// grow along the list: nodes only join at the back (no splicing).
class COGENT_INTERNAL_API WaitList : public List<WaitNode> {
public:
    void push_back(WaitNode* n) noexcept {
        n->seq = next_seq_++;
        List<WaitNode>::push_back(n);
    }
    void splice_back(List<WaitNode>&) = delete;  // would break the order of the numbers
    // The number the next node to join will get.
    std::uint64_t next_seq() const noexcept { return next_seq_; }

private:
    std::uint64_t next_seq_ = 0;
};

// The owner of `list` is being destroyed: unlink every node and let it react (on_abandon: a
// parked greenlet is woken with WaitableDestroyed naming `kind`; an iwait registration fails its
// iteration). Nodes without the hook are only unlinked. Never switches.
inline void abandon_all(List<WaitNode>& list, const char* kind) noexcept {
    while (WaitNode* n = list.pop_front())
        if (n->on_abandon) n->on_abandon(n, kind);
}

}  // namespace cogent::detail
