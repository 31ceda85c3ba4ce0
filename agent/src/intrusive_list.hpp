#pragma once
// A minimal intrusive doubly linked list: O(1) unlink without allocation, used for the
// worker's connections, its deadline queue and each connection's pending frames.

#include <cstddef>

namespace spoa::detail {

struct list_hook {
    list_hook* prev = nullptr;
    list_hook* next = nullptr;
    void* owner = nullptr;  ///< the item holding this hook (avoids offsetof tricks)
    [[nodiscard]] bool linked() const noexcept { return next != nullptr; }
    void unlink() noexcept {
        if (!next) return;
        prev->next = next;
        next->prev = prev;
        prev = next = nullptr;
    }
};

/// T must have a `list_hook` member given by `Hook`.
template <typename T, list_hook T::*Hook>
class intrusive_list {
  public:
    intrusive_list() noexcept { head_.prev = head_.next = &head_; }
    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;

    [[nodiscard]] bool empty() const noexcept { return head_.next == &head_; }
    void push_back(T& item) noexcept {
        list_hook& h = item.*Hook;
        h.owner = &item;
        h.prev = head_.prev;
        h.next = &head_;
        head_.prev->next = &h;
        head_.prev = &h;
    }
    [[nodiscard]] T* front() noexcept { return empty() ? nullptr : from_hook(head_.next); }
    /// Next item after `item`, or nullptr.
    [[nodiscard]] T* next(T& item) noexcept {
        list_hook* n = (item.*Hook).next;
        return n == &head_ ? nullptr : from_hook(n);
    }
    [[nodiscard]] std::size_t size() const noexcept {
        std::size_t n = 0;
        for (const list_hook* h = head_.next; h != &head_; h = h->next)
            ++n;
        return n;
    }

  private:
    static T* from_hook(list_hook* h) noexcept { return static_cast<T*>(h->owner); }
    list_hook head_;
};

}  // namespace spoa::detail
