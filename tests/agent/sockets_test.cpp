// Transport-level behaviour: resets mid-frame, Unix listeners, partial frames across reads.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

/// A fresh private directory under /tmp, removed with its contents at scope exit.
class temp_dir {
  public:
    temp_dir() {
        char tmpl[] = "/tmp/spoa-test-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

  private:
    std::string path_;
};

}  // namespace

TEST_CASE("sockets: a reset in the middle of a frame leaves the agent serving others",
          "[sockets]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 5000ms;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    auto other = a.connect_ready();

    SECTION("half a NOTIFY, then RST") {
        auto victim = a.connect_ready();
        const auto f = encode_frame(3, fin, 1, 1, notify_payload(one_arg("echo", "abcdefgh")));
        victim.send_raw(std::span(f).first(f.size() / 2));
        CHECK(victim.silent_for(50ms));
        victim.reset_close();
    }
    SECTION("half a length prefix, then RST") {
        auto victim = a.connect_ready();
        victim.send_raw("00 00");
        CHECK(victim.silent_for(50ms));
        victim.reset_close();
    }
    SECTION("an async frame in flight, then RST") {
        auto victim = a.connect_ready();
        victim.send_notify(1, 1, message_spec{"slow", {}});
        REQUIRE(box.wait_for(1));
        victim.reset_close();
        REQUIRE(a.wait_metric("spoa_connections_active", 1));
        box.take().reply.done();
        CHECK(a.wait_metric("spoa_async_late_total", 1));
    }
    SECTION("half a HELLO, then RST") {
        auto victim = a.connect();
        const auto f = encode_frame(1, fin, 0, 0, hello_payload({}));
        victim.send_raw(std::span(f).first(20));
        CHECK(victim.silent_for(50ms));
        victim.reset_close();
    }
    CHECK(a.wait_metric("spoa_connections_active", 1));
    CHECK(a.metric("spoa_inflight_frames") == 0);
    other.send_notify(1, 1, one_arg("echo", "still here"));
    CHECK(other.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("v", typed_value::string("still here"))});
    auto fresh = a.connect_ready();
    fresh.send_notify(2, 2, one_arg("echo", "new"));
    CHECK(fresh.expect(ft::ack).frame_id == 2);
}

TEST_CASE("sockets: frames straddling reads and many frames in one read", "[sockets]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect();
    // HELLO and the first NOTIFY in one write, then a NOTIFY cut in three writes.
    auto bytes = encode_frame(1, fin, 0, 0, hello_payload({}));
    const auto n1 = encode_frame(3, fin, 1, 1, notify_payload(one_arg("echo", "one")));
    bytes.insert(bytes.end(), n1.begin(), n1.end());
    c.send_raw(bytes);
    CHECK(c.expect(ft::agent_hello).kv_string("version") == "2.0");
    CHECK(c.expect(ft::ack).frame_id == 1);

    const std::string big(20000, 'z');  // larger than one 16 KiB read on the agent side
    const auto n2 = encode_frame(
        3, fin, 1, 2,
        notify_payload(message_spec{
            "echo", {{"v", typed_value::string(std::string_view(big).substr(0, 16000))}}}));
    REQUIRE(n2.size() <= 16384);
    c.send_raw(std::span(n2).first(3));
    CHECK(c.silent_for(20ms));
    c.send_raw(std::span(n2).subspan(3, 5000));
    CHECK(c.silent_for(20ms));
    c.send_raw(std::span(n2).subspan(5003));
    const auto ack = c.expect(ft::ack);
    CHECK(ack.frame_id == 2);
    CHECK(ack.actions() == std::vector<owned_action>{set_txn(
                               "v", typed_value::string(std::string_view(big).substr(0, 16000)))});
}

TEST_CASE("sockets: a Unix listener with mode 0660 works", "[sockets]") {
    temp_dir dir;
    const std::string path = dir.path() + "/agent.sock";
    auto cfg = test_config();
    cfg.listeners.clear();
    cfg.listeners.push_back(listen_address::parse("unix:" + path));
    cfg.unix_socket.mode = 0660;
    cfg.threads = 2;
    {
        test_agent a(cfg);
        handlers::register_echo(a.agent());
        a.start();
        REQUIRE(a.agent().bound_addresses().size() == 1);
        CHECK(a.agent().bound_addresses()[0].to_string() == "unix:" + path);

        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0660);

        std::vector<fake_haproxy> clients;
        for (int i = 0; i < 4; ++i) {
            clients.push_back(fake_haproxy::connect_unix(path));
            (void)clients.back().handshake();
        }
        for (std::size_t i = 0; i < clients.size(); ++i) {
            clients[i].send_notify(i, 1, one_arg("echo", "unix"));
            const auto ack = clients[i].expect(ft::ack);
            CHECK(ack.stream_id == i);
            CHECK(ack.actions() ==
                  std::vector<owned_action>{set_txn("v", typed_value::string("unix"))});
        }
        // A second agent may not steal a socket that is in use.
        test_agent thief(cfg);
        CHECK_THROWS_WITH(thief.start(), Catch::Contains("in use"));
        // ... and its failed start must leave the live socket file alone.
        CHECK(std::filesystem::exists(path));
        auto late = fake_haproxy::connect_unix(path);
        CHECK(late.handshake().kv_string("version") == "2.0");
    }
    // Stopping removes the socket file.
    CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("sockets: a stale Unix socket file is replaced", "[sockets]") {
    temp_dir dir;
    const std::string path = dir.path() + "/stale.sock";
    {
        // Leave a socket file nobody listens on.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        ::close(fd);
    }
    REQUIRE(std::filesystem::exists(path));
    auto cfg = test_config();
    cfg.listeners = {listen_address::parse("unix:" + path)};
    test_agent a(cfg);
    a.start();
    auto c = fake_haproxy::connect_unix(path);
    CHECK(c.handshake().kv_string("version") == "2.0");
}

}  // namespace spoa::testing
