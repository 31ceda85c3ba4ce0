#include "handler_table.hpp"

#include <stdexcept>

namespace spoa::detail {

void handler_table::insert_named(handler_entry e) {
    if (e.name.empty())
        throw std::invalid_argument("handler registered with an empty message name");
    for (std::size_t i = 0; i < named_; ++i) {
        if (entries_[i].name == e.name) {
            throw std::invalid_argument("a handler is already registered for message '" + e.name +
                                        "'");
        }
    }
    entries_.insert(entries_.begin() + static_cast<std::ptrdiff_t>(named_), std::move(e));
    ++named_;
}

void handler_table::put_fallback(handler_entry e) {
    if (has_fallback_) {
        entries_.back() = std::move(e);
        return;
    }
    entries_.push_back(std::move(e));
    has_fallback_ = true;
}

void handler_table::add(std::string name, sync_handler h) {
    if (!h) throw std::invalid_argument("empty handler for message '" + name + "'");
    insert_named({std::move(name), std::move(h), {}});
}

void handler_table::add(std::string name, async_handler h) {
    if (!h) throw std::invalid_argument("empty handler for message '" + name + "'");
    insert_named({std::move(name), {}, std::move(h)});
}

void handler_table::set_fallback(sync_handler h) {
    put_fallback({{}, std::move(h), {}});
}
void handler_table::set_fallback(async_handler h) {
    put_fallback({{}, {}, std::move(h)});
}

}  // namespace spoa::detail
