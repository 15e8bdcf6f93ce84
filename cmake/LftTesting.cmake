# lft_add_test(NAME name SOURCES a.cc... LIBS lib... LABELS area [TIMEOUT s])
#
# Builds one GoogleTest binary and registers it as one ctest test carrying its
# area label (common, model, data, store, coordinator, trainer, evaluator,
# e2e, gpu). Every lft test must go through here so that none lacks a label.
function(lft_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_LABELS)
    message(FATAL_ERROR "lft_add_test(${T_NAME}): LABELS is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  lft_target_defaults(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock
                        GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}"
                       TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "LFT_TEST_SRCDIR=${PROJECT_SOURCE_DIR}")
endfunction()
