// The Redis tests need a redis-server binary (they start private ones): without it they are
// skipped (exit 77, ctest SKIP_RETURN_CODE), with a message saying so.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "redis_server.hpp"

int main(int argc, char* argv[]) {
    if (spoa::handlers::routing::test::redis_server_binary().empty()) {
        std::fprintf(stderr,
                     "skipped: redis-server is not installed (apt-get install "
                     "redis-server)\n");
        return 77;
    }
    return Catch::Session().run(argc, argv);
}
