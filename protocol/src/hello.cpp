#include "spoa/protocol/hello.hpp"

#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/kv_list.hpp"

namespace spoa::protocol {
namespace {

[[nodiscard]] std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

/// Calls `fn(item)` for each trimmed, comma-separated item; stops early when fn returns true.
template <typename Fn>
bool any_item(std::string_view list, Fn&& fn) {
    while (true) {
        const std::size_t comma = list.find(',');
        if (fn(trim(list.substr(0, comma)))) return true;
        if (comma == std::string_view::npos) return false;
        list.remove_prefix(comma + 1);
    }
}

[[nodiscard]] bool all_digits(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

[[nodiscard]] bool is_integer_type(data_type t) noexcept {
    return t == data_type::int32 || t == data_type::uint32 || t == data_type::int64 ||
           t == data_type::uint64;
}

}  // namespace

bool supports_version_2_0(std::string_view list) noexcept {
    // "Major.Minor" entries; a major version announces every minor up to the given one, so any
    // well-formed 2.x entry covers the 2.0 we speak (protocol/README.md §6.1).
    return any_item(list, [](std::string_view item) {
        const std::size_t dot = item.find('.');
        if (dot == std::string_view::npos) return false;
        const std::string_view major = trim(item.substr(0, dot));
        const std::string_view minor = trim(item.substr(dot + 1));
        if (!all_digits(major) || !all_digits(minor)) return false;
        std::size_t i = 0;
        while (i + 1 < major.size() && major[i] == '0')
            ++i;
        return major.substr(i) == "2";
    });
}

bool has_capability(std::string_view list, std::string_view word) noexcept {
    return any_item(list, [word](std::string_view item) { return item == word; });
}

error parse_haproxy_hello(bytes_view payload, haproxy_hello& out) noexcept {
    out = haproxy_hello{};
    bool have_versions = false;
    bool have_size = false;
    bool have_caps = false;
    kv_reader kv(payload);
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        if (const error e = kv.next(key, value); e != error::none) return e;
        if (key == "supported-versions") {
            if (value.type() != data_type::string) return error::missing_version;
            out.supported_versions = value.as_string();
            have_versions = true;
        } else if (key == "max-frame-size") {
            // HAProxy sends UINT32; accept any integer that fits 32 bits unsigned.
            if (!is_integer_type(value.type())) return error::bad_max_frame_size;
            const std::uint64_t v = value.as_uint64();
            if (v > 0xFFFFFFFFu) return error::bad_max_frame_size;
            out.max_frame_size = static_cast<std::uint32_t>(v);
            have_size = true;
        } else if (key == "capabilities") {
            if (value.type() != data_type::string) return error::missing_capabilities;
            out.capabilities = value.as_string();
            have_caps = true;
        } else if (key == "engine-id") {
            if (value.type() == data_type::string) out.engine_id = value.as_string();
        } else if (key == "healthcheck") {
            out.healthcheck = value.type() == data_type::boolean && value.as_bool();
        }
        // Other keys are skipped: HAProxy may add some (protocol/README.md §5.1).
    }
    if (!have_versions) return error::missing_version;
    if (!have_size) return error::missing_max_frame_size;
    if (!have_caps) return error::missing_capabilities;
    out.offers_pipelining = has_capability(out.capabilities, "pipelining");
    out.offers_async = has_capability(out.capabilities, "async");
    out.offers_fragmentation = has_capability(out.capabilities, "fragmentation");
    return error::none;
}

negotiation negotiate(const haproxy_hello& hello, const agent_capabilities& ours) noexcept {
    negotiation n;
    n.healthcheck = hello.healthcheck;
    if (!supports_version_2_0(hello.supported_versions)) {
        n.refusal = error::unsupported_version;
        return n;
    }
    if (hello.max_frame_size < min_max_frame_size) {
        n.refusal = error::bad_max_frame_size;
        return n;
    }
    n.max_frame_size =
        ours.max_frame_size < hello.max_frame_size ? ours.max_frame_size : hello.max_frame_size;
    if (n.max_frame_size < min_max_frame_size) n.max_frame_size = min_max_frame_size;
    n.pipelining = ours.pipelining && hello.offers_pipelining;
    n.async = ours.async && hello.offers_async;
    n.fragmentation = ours.fragmentation;
    return n;
}

void encode_agent_hello(byte_buffer& out, const negotiation& result) {
    frame_writer w(out);
    w.begin(frame_type::agent_hello, frame_flags::fin, 0, 0);
    encode_kv(out, "version", typed_value::string("2.0"));
    encode_kv(out, "max-frame-size", typed_value::uint32(result.max_frame_size));
    // At most three words: build the list on the stack.
    char caps[64];
    std::size_t n = 0;
    const auto add = [&](std::string_view word) {
        if (n != 0) caps[n++] = ',';
        for (const char c : word)
            caps[n++] = c;
    };
    if (result.pipelining) add("pipelining");
    if (result.async) add("async");
    if (result.fragmentation) add("fragmentation");
    encode_kv(out, "capabilities", typed_value::string({caps, n}));
    (void)w.finish(0xFFFFFFFFu);
}

}  // namespace spoa::protocol
