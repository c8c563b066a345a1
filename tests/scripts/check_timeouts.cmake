# Every ctest entry of the build in the working directory has a TIMEOUT of
# its own (STYLE.md: every test has a time limit). Run by ctest as
# test_timeouts: cmake -P check_timeouts.cmake, in the build folder.
# The CTestTestfile.cmake files are read with add_test, set_tests_properties
# and subdirs defined here to record what they declare. Rejected: asking
# ctest (--show-only=json-v1), since a ctest started inside a ctest run
# rewrites the run's Testing/Temporary/LastTest.log.
cmake_minimum_required(VERSION 3.20)
function(add_test name)
  set_property(GLOBAL APPEND PROPERTY SL_TESTS "${name}")
endfunction()
function(set_tests_properties)
  # names..., PROPERTIES, then key value pairs; ARGVn one by one, as a value
  # (ENVIRONMENT) may hold a list
  set(names "")
  set(i 0)
  while(i LESS ARGC AND NOT "${ARGV${i}}" STREQUAL "PROPERTIES")
    list(APPEND names "${ARGV${i}}")
    math(EXPR i "${i} + 1")
  endwhile()
  math(EXPR i "${i} + 1")
  while(i LESS ARGC)
    if("${ARGV${i}}" STREQUAL "TIMEOUT")
      set_property(GLOBAL APPEND PROPERTY SL_TIMED ${names})
    endif()
    math(EXPR i "${i} + 2")
  endwhile()
endfunction()
function(subdirs)
  foreach(dir ${ARGN})
    if(EXISTS "${CMAKE_CURRENT_LIST_DIR}/${dir}/CTestTestfile.cmake")
      include("${CMAKE_CURRENT_LIST_DIR}/${dir}/CTestTestfile.cmake")
    endif()
  endforeach()
endfunction()

include("${CMAKE_CURRENT_BINARY_DIR}/CTestTestfile.cmake")
get_property(tests GLOBAL PROPERTY SL_TESTS)
get_property(timed GLOBAL PROPERTY SL_TIMED)
list(LENGTH tests n)
if(n EQUAL 0)
  message(FATAL_ERROR "no ctest entries found under ${CMAKE_CURRENT_BINARY_DIR}")
endif()
set(missing "")
foreach(t ${tests})
  if(NOT t IN_LIST timed)
    list(APPEND missing ${t})
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "ctest entries without a TIMEOUT: ${missing}")
endif()
message(STATUS "all ${n} ctest entries have a TIMEOUT")
