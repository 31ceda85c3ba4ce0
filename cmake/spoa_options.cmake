# Per-target build settings shared by every spoa target.

# The same warnings for every build; they become errors only when SPOA_WERROR is on (the
# project's own builds: tests/run.sh and CI). A packager's or a user's build must not fail
# because a newer or older compiler reports something new (GCC 12 at -O3 reports a false
# -Wrestrict inside libstdc++'s string concatenation).
function(spoa_set_warnings target)
    target_compile_options(${target} PRIVATE
        $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Wnon-virtual-dtor
                                 -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wpedantic
                                 -Wimplicit-fallthrough>)
    if(SPOA_WERROR)
        target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    endif()
endfunction()

# ASan+UBSan for the whole build when SPOA_SANITIZE is on (set from the top level so that test
# binaries, libraries and tools are all instrumented alike).
macro(spoa_enable_sanitizers)
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=all)
    add_link_options(-fsanitize=address,undefined)
endmacro()

# ThreadSanitizer for the whole build when SPOA_TSAN is on: every data race between loop
# threads, the service loop, the admin thread and resolver threads is reported.
macro(spoa_enable_thread_sanitizer)
    add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
    add_link_options(-fsanitize=thread)
endmacro()
