// Guard-page tests (style.md practice 11): inputs are placed so that their last byte is the last
// readable byte before a PROT_NONE page, so any over-read faults even without ASan.

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "malformed_cases.hpp"
#include "pipeline.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "spoa/protocol/notify.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::from_hex;
using spoa::test::spec_vectors;

namespace {

/// Two pages: the first readable, the second PROT_NONE.
class guard_page {
  public:
    guard_page() {
        page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        void* p =
            mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
        base_ = static_cast<std::uint8_t*>(p);
        if (mprotect(base_ + page_, page_, PROT_NONE) != 0) {
            munmap(base_, 2 * page_);
            throw std::runtime_error("mprotect failed");
        }
    }
    ~guard_page() { munmap(base_, 2 * page_); }
    guard_page(const guard_page&) = delete;
    guard_page& operator=(const guard_page&) = delete;

    [[nodiscard]] std::size_t capacity() const noexcept { return page_; }
    /// First byte of the guard.
    [[nodiscard]] const std::uint8_t* guard() const noexcept { return base_ + page_; }

    /// Copies `data` so that it ends right before the guard and returns the placed copy.
    bytes_view place(bytes_view data) {
        if (data.size() > page_) throw std::runtime_error("input larger than a page");
        std::uint8_t* dst = base_ + page_ - data.size();
        if (!data.empty()) std::memcpy(dst, data.data(), data.size());
        return {dst, data.size()};
    }

  private:
    std::uint8_t* base_ = nullptr;
    std::size_t page_ = 0;
};

/// Runs every payload parser on `payload`; returns their errors in a fixed order.
std::vector<error> run_parsers(bytes_view payload) {
    std::vector<error> errors;
    {
        kv_reader kv(payload);
        error e = error::none;
        while (e == error::none && !kv.done()) {
            std::string_view key;
            typed_value value;
            e = kv.next(key, value);
        }
        errors.push_back(e);
    }
    notify_decoder notify;
    errors.push_back(notify.decode(payload));
    haproxy_hello hello;
    errors.push_back(parse_haproxy_hello(payload, hello));
    disconnect_info info;
    errors.push_back(parse_disconnect(payload, info));
    std::vector<action> actions;
    errors.push_back(decode_actions(payload, actions));
    return errors;
}

enum parser_index : std::size_t { kv = 0, notify = 1, hello = 2, disconnect = 3, actions = 4 };

/// The parser that owns a frame type's payload.
std::size_t parser_for(frame_type t) {
    switch (t) {
        case frame_type::haproxy_hello:
            return hello;
        case frame_type::agent_hello:
            return kv;
        case frame_type::haproxy_disconnect:
        case frame_type::agent_disconnect:
            return disconnect;
        case frame_type::notify:
        case frame_type::unset:
            return notify;
        case frame_type::ack:
            return actions;
    }
    return kv;
}

}  // namespace

TEST_CASE("guard page: reading the byte after the placed input really faults", "[guard_page]") {
    guard_page g;
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Default action for the fault: no Catch2 or sanitizer handler in the child.
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        const volatile std::uint8_t* p = g.guard();
        const std::uint8_t v = *p;
        _exit(v == 0 ? 0 : 1);  // only reached if the guard did not fault
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    CHECK((WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS));
}

TEST_CASE("guard page: every vector and every prefix of it, frame and payload parsers",
          "[guard_page][vectors]") {
    guard_page g;
    for (const auto& v : spec_vectors) {
        INFO(v.name);
        const bytes full = from_hex(v.hex);
        for (std::size_t n = 0; n <= full.size(); ++n) {
            INFO("prefix " << n);
            const bytes_view placed = g.place(spoa::test::view(full).first(n));
            frame f;
            const auto r = decode_frame(placed, 0xFFFFFFFFu, f);
            if (n < full.size()) {
                CHECK(r.status == decode_status::need_more);
                CHECK(r.size == (n < 4 ? 0 : full.size()));
                continue;
            }
            REQUIRE(r.status == decode_status::ok);
            CHECK(f.payload.data() + f.payload.size() == g.guard());
            // The payload ends at the guard too: run every parser on it.
            const std::vector<error> errors = run_parsers(f.payload);
            CHECK(errors[parser_for(f.type)] == error::none);
        }

        // Every prefix of the payload alone, ending at the guard: the owning parser reports
        // either success (cut at an element boundary) or a precise error, never an over-read.
        const bytes_view payload = spoa::test::decode_one(spoa::test::view(full)).payload;
        const frame_type type = spoa::test::decode_one(spoa::test::view(full)).type;
        for (std::size_t n = 0; n <= payload.size(); ++n) {
            INFO("payload prefix " << n);
            const std::vector<error> on_heap = run_parsers(payload.first(n));
            const std::vector<error> at_guard = run_parsers(g.place(payload.first(n)));
            CHECK(at_guard == on_heap);
            const error owner = at_guard[parser_for(type)];
            if (n == payload.size()) {
                CHECK(owner == error::none);
            } else if (type == frame_type::haproxy_hello) {
                CHECK((owner == error::none || owner == error::truncated ||
                       owner == error::missing_version || owner == error::missing_max_frame_size ||
                       owner == error::missing_capabilities));
            } else if (type == frame_type::haproxy_disconnect ||
                       type == frame_type::agent_disconnect) {
                CHECK((owner == error::none || owner == error::truncated ||
                       owner == error::bad_status_code));
            } else {
                CHECK((owner == error::none || owner == error::truncated));
            }
        }
    }
}

TEST_CASE("guard page: the whole vector stream through the pipeline", "[guard_page][vectors]") {
    guard_page g;
    bytes stream;
    for (const auto& v : spec_vectors) {
        const bytes b = from_hex(v.hex);
        stream.insert(stream.end(), b.begin(), b.end());
    }
    REQUIRE(stream.size() <= g.capacity());
    for (std::size_t n = 0; n <= stream.size(); ++n) {
        const auto r = spoa::test::run_pipeline(g.place(spoa::test::view(stream).first(n)));
        CHECK(r.err == error::none);
        if (n == stream.size()) {
            CHECK(r.frames == spec_vectors.size());
            CHECK(!r.need_more);
        }
    }
}

TEST_CASE("guard page: every malformed row and every prefix of it", "[guard_page][malformed]") {
    guard_page g;
    for (const auto& c : spoa::test::malformed_cases()) {
        INFO(c.name);
        const auto whole =
            spoa::test::run_pipeline(g.place(spoa::test::view(c.input)), c.max_frame_size);
        CHECK(whole.err == c.expected);
        for (std::size_t n = 0; n < c.input.size(); ++n) {
            const bytes_view prefix = spoa::test::view(c.input).first(n);
            const auto on_heap = spoa::test::run_pipeline(prefix, c.max_frame_size);
            const auto at_guard = spoa::test::run_pipeline(g.place(prefix), c.max_frame_size);
            CHECK(at_guard.err == on_heap.err);
            CHECK(at_guard.frames == on_heap.frames);
            CHECK(at_guard.need_more == on_heap.need_more);
        }
    }
}
