# Warnings, sanitizers and the compiler cache, applied to every lft target
# through lft_target_defaults(); third-party headers are included as SYSTEM so
# their warnings never reach us.

find_program(LFT_CCACHE ccache)
if(LFT_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${LFT_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${LFT_CCACHE})
endif()

if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set(_lft_shadow -Wshadow=local)
else()
  set(_lft_shadow -Wshadow-uncaptured-local)
endif()
set(LFT_WARNING_FLAGS -Wall -Wextra -Wpedantic ${_lft_shadow} -Wnon-virtual-dtor
    -Wno-unused-parameter)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Clang checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED
  # annotations (GCC ignores them); scripts/check-thread-safety.sh builds the
  # services this way with -Werror in CI.
  list(APPEND LFT_WARNING_FLAGS -Wthread-safety)
endif()
if(LFT_WARNINGS_AS_ERRORS)
  list(APPEND LFT_WARNING_FLAGS -Werror)
endif()

if(LFT_SANITIZE)
  string(REPLACE "," ";" _lft_sanitizers "${LFT_SANITIZE}")
  string(REPLACE ";" "," _lft_sanitize_flag "${_lft_sanitizers}")
  add_compile_options(-fsanitize=${_lft_sanitize_flag} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_lft_sanitize_flag})
endif()

if(LFT_FUZZ)
  # Every library is instrumented for coverage and ASan; the fuzz targets
  # link libFuzzer's main (tests/fuzz/CMakeLists.txt).
  add_compile_options(-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address)
endif()

# Applies lft's warning set to a target that we own.
function(lft_target_defaults target)
  target_compile_options(${target} PRIVATE ${LFT_WARNING_FLAGS})
endfunction()
