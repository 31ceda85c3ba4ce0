// The one Catch2 runner of every unit-test executable: compiling Catch2's implementation takes
// about half a minute, so it is built once and linked everywhere.
//
// GCC 12 with -O2 and -fsanitize=address reports a false -Wmaybe-uninitialized inside
// std::function/std::regex as instantiated by Catch2's runner (libstdc++, not our code).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_RUNNER
#include <csignal>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
    // Tests write to sockets a peer may have closed, as the agent does (it ignores SIGPIPE).
    std::signal(SIGPIPE, SIG_IGN);
    return Catch::Session().run(argc, argv);
}
