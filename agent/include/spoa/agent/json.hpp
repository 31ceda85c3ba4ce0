#pragma once
/// A small JSON writer for the admin endpoint and the JSON log format: appends to a string,
/// inserting the commas. Not a parser. Strings are escaped per RFC 8259 (control characters as
/// \u00XX; bytes that are not valid UTF-8 are written as U+FFFD, so the output stays valid JSON
/// whatever a client put in a Host header).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spoa {

/// Appends `s` as a JSON string literal (with its quotes).
void append_json_string(std::string& out, std::string_view s);

class json_writer {
  public:
    explicit json_writer(std::string& out) : out_(out) {}

    json_writer& begin_object();
    json_writer& end_object();
    json_writer& begin_array();
    json_writer& end_array();
    /// The name of the next member (inside an object).
    json_writer& key(std::string_view k);

    json_writer& value(std::string_view s);
    json_writer& value(const char* s) { return value(std::string_view(s)); }
    json_writer& value(bool b);
    json_writer& value(std::int64_t n);
    json_writer& value(std::uint64_t n);
    json_writer& value(int n) { return value(static_cast<std::int64_t>(n)); }
    json_writer& value(unsigned n) { return value(static_cast<std::uint64_t>(n)); }
    json_writer& value(double d);
    json_writer& null();

    /// key(k).value(v) in one call.
    template <typename T>
    json_writer& member(std::string_view k, const T& v) {
        return key(k).value(v);
    }

  private:
    void separate();

    std::string& out_;
    /// One entry per open object/array: true once it has an element (a comma comes next).
    std::vector<bool> has_element_;
    bool after_key_ = false;
};

}  // namespace spoa
