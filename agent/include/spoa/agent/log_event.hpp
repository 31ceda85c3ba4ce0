#pragma once
/// Log lines with named fields, in the process's log format: text ("message key=value ...") or
/// JSON (one object per line, the fields as members beside time, level, thread and message).
///
///   spoa::set_log_format(spoa::log_format::json);
///   logger->set_formatter(spoa::json_log_formatter());
///   spoa::log_event(*logger, spdlog::level::debug, "decision",
///                   {{"resource", "app1"}, {"cache", "hit"}, {"latency_us", 12}});
///
/// Field names are stable, they are what log pipelines index: connection, engine,
/// spoe_message, protocol, resource, cache, kind, endpoint, status, reason, latency_us.

#include <spdlog/formatter.h>
#include <spdlog/logger.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <variant>

namespace spoa {

enum class log_format : std::uint8_t { text, json };

/// The format log_event writes in; set once at start-up, before any loop thread runs.
void set_log_format(log_format f) noexcept;
[[nodiscard]] log_format current_log_format() noexcept;

struct log_field {
    std::string_view key;
    std::variant<std::string_view, std::int64_t, std::uint64_t> value;

    log_field(std::string_view k, std::string_view v) : key(k), value(v) {}
    log_field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    log_field(std::string_view k, std::int64_t v) : key(k), value(v) {}
    log_field(std::string_view k, std::uint64_t v) : key(k), value(v) {}
    log_field(std::string_view k, int v) : key(k), value(static_cast<std::int64_t>(v)) {}
};

/// Writes one line at `level` if the logger would (check should_log first on hot paths: the
/// line is rendered into a string).
void log_event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
               std::initializer_list<log_field> fields);

/// The spdlog formatter of log_format::json: {"time":"2026-12-07T17:34:30.123Z","level":"info",
/// "thread":1234,"message":"...",<fields>}. Lines not written by log_event have no fields.
[[nodiscard]] std::unique_ptr<spdlog::formatter> json_log_formatter();

}  // namespace spoa
