// GCC 12 with -O2 and -fsanitize=address reports a false -Wmaybe-uninitialized inside
// std::function/std::regex as instantiated by Catch2's main (libstdc++, not our code); it only
// matters here, where CATCH_CONFIG_MAIN pulls that code in.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
