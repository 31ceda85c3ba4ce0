#include "spoa/agent/log_event.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

#include "spoa/agent/json.hpp"

namespace spoa {
namespace {

std::atomic<log_format> format_in_use{log_format::text};

/// Marks a payload whose message and fields log_event already rendered as JSON members; the
/// JSON formatter then copies them as they are. An ASCII record separator never appears in a
/// message written as text.
constexpr char prerendered = '\x1e';

void append_text_value(std::string& out, const log_field& f) {
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        // A value with a space or a quote is quoted, so that the line still splits on spaces.
        const bool plain = !s->empty() && std::all_of(s->begin(), s->end(), [](char c) {
            return static_cast<unsigned char>(c) > 0x20 && c != '"' && c != '=' && c != 0x7F;
        });
        if (!plain) {
            append_json_string(out, *s);
        } else {
            out.append(*s);
        }
    } else if (const auto* i = std::get_if<std::int64_t>(&f.value)) {
        out += std::to_string(*i);
    } else {
        out += std::to_string(std::get<std::uint64_t>(f.value));
    }
}

std::string render_text(std::string_view message, std::initializer_list<log_field> fields) {
    std::string out(message);
    for (const auto& f : fields) {
        out.push_back(' ');
        out.append(f.key);
        out.push_back('=');
        append_text_value(out, f);
    }
    return out;
}

std::string render_json_members(std::string_view message, std::initializer_list<log_field> fields) {
    std::string out(1, prerendered);
    out += "\"message\":";
    append_json_string(out, message);
    for (const auto& f : fields) {
        out.push_back(',');
        append_json_string(out, f.key);
        out.push_back(':');
        if (const auto* s = std::get_if<std::string_view>(&f.value)) {
            append_json_string(out, *s);
        } else if (const auto* i = std::get_if<std::int64_t>(&f.value)) {
            out += std::to_string(*i);
        } else {
            out += std::to_string(std::get<std::uint64_t>(f.value));
        }
    }
    return out;
}

/// 2026-12-07T17:34:30.123Z (UTC, milliseconds).
void append_time(std::string& out, spdlog::log_clock::time_point t) {
    const auto since = t.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs).count();
    const std::time_t tt = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    out.append(buf, n);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms));
    out += frac;
}

class json_formatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        std::string line = "{\"time\":\"";
        append_time(line, msg.time);
        line += "\",\"level\":";
        const auto level = spdlog::level::to_string_view(msg.level);
        append_json_string(line, std::string_view(level.data(), level.size()));
        line += ",\"thread\":" + std::to_string(msg.thread_id) + ",";
        const std::string_view payload(msg.payload.data(), msg.payload.size());
        if (!payload.empty() && payload.front() == prerendered) {
            line.append(payload.substr(1));
        } else {
            line += "\"message\":";
            append_json_string(line, payload);
        }
        line += "}\n";
        dest.append(line.data(), line.data() + line.size());
    }
    [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<json_formatter>();
    }
};

}  // namespace

void set_log_format(log_format f) noexcept {
    format_in_use.store(f, std::memory_order_relaxed);
}

log_format current_log_format() noexcept {
    return format_in_use.load(std::memory_order_relaxed);
}

void log_event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
               std::initializer_list<log_field> fields) {
    if (!logger.should_log(level)) return;
    const std::string line = current_log_format() == log_format::json
                                 ? render_json_members(message, fields)
                                 : render_text(message, fields);
    logger.log(level, "{}", line);
}

std::unique_ptr<spdlog::formatter> json_log_formatter() {
    return std::make_unique<json_formatter>();
}

}  // namespace spoa
