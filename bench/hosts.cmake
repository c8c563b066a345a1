# sluice-bench qos --hosts makes its bed with tests/hosts/hosts.sh and
# deploy/tc/sluice-tc.sh from the source tree it was built from
# (SLUICE_SOURCE_DIR in the environment overrides it). Deferred like
# xport.cmake's link: the program is defined after the fragments are read.
cmake_language(DEFER CALL target_compile_definitions sluice-bench PRIVATE
               SLUICE_BENCH_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
