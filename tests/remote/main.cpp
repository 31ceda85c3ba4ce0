// GCC 12 with -O2 and -fsanitize=address reports a false -Wmaybe-uninitialized inside
// std::function/std::regex as instantiated by Catch2's runner (libstdc++, not our code).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_RUNNER
#include <csignal>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
    // The tests write to sockets a peer may have closed, as the agent does (it ignores SIGPIPE).
    std::signal(SIGPIPE, SIG_IGN);
    return Catch::Session().run(argc, argv);
}
