# What the three e2e directories (tests/e2e, tests/e2e_routing, tests/e2e_coldstart) share:
# the Python interpreter and the way a test script becomes a ctest test. Included by each of
# their CMakeLists.txt.
include_guard(GLOBAL)

set(SPOA_E2E_PYTHON /usr/bin/python3 CACHE FILEPATH "Python 3 interpreter for the e2e tests")

# spoa_add_e2e_tests([PREFIX <p>] TESTS <name>...)
# For each name: test e2e_<p><name> runs test_<p><name>.py of the calling directory with
# --agent <spoa-agent> --tmpdir <binary dir>/tmp/<name>; label e2e, 60 s timeout, exit code 77
# reports "skipped" (no haproxy).
function(spoa_add_e2e_tests)
    cmake_parse_arguments(PARSE_ARGV 0 arg "" "PREFIX" "TESTS")
    foreach(t IN LISTS arg_TESTS)
        add_test(NAME e2e_${arg_PREFIX}${t}
                 COMMAND ${SPOA_E2E_PYTHON} -B
                         ${CMAKE_CURRENT_SOURCE_DIR}/test_${arg_PREFIX}${t}.py
                         --agent $<TARGET_FILE:spoa-agent>
                         --tmpdir ${CMAKE_CURRENT_BINARY_DIR}/tmp/${t})
        set_tests_properties(e2e_${arg_PREFIX}${t} PROPERTIES
            LABELS e2e
            TIMEOUT 60
            SKIP_RETURN_CODE 77)
    endforeach()
endfunction()
