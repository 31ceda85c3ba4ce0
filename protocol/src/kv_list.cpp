#include "spoa/protocol/kv_list.hpp"

namespace spoa::protocol {

error kv_reader::next(std::string_view& key, typed_value& value) noexcept {
    byte_reader attempt = in_;
    if (const error e = attempt.read_string(key); e != error::none) return e;
    // HAProxy's decoder treats a zero-length key as invalid (protocol/README.md §5.1).
    if (key.empty()) return error::empty_key;
    if (const error e = decode_typed_value(attempt, value); e != error::none) return e;
    in_ = attempt;
    return error::none;
}

void encode_kv(byte_buffer& out, std::string_view key, const typed_value& value) {
    out.put_length_prefixed(key);
    encode_typed_value(out, value);
}

}  // namespace spoa::protocol
