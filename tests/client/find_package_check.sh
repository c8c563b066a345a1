#!/bin/sh
# Install the build into a temporary prefix, then configure, build and run a
# small CMake project that finds libsluice with find_package(Sluice) and
# links Sluice::sluice, the way a user's project would.
#   find_package_check.sh BUILD_DIR C_COMPILER
set -eu
build=$1
cc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mkdir "$tmp/app"
cat >"$tmp/app/CMakeLists.txt" <<'CML'
cmake_minimum_required(VERSION 3.20)
project(sluice_user C)
find_package(Sluice 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE Sluice::sluice)
CML
cp "$(dirname "$0")/install_app.c" "$tmp/app/app.c"
# A version this release does not provide is refused.
cat >"$tmp/app/bad.cmake" <<'CML'
find_package(Sluice 1.0 QUIET)
if(Sluice_FOUND)
  message(FATAL_ERROR "find_package(Sluice 1.0) accepted version ${Sluice_VERSION}")
endif()
CML
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_PROJECT_INCLUDE="$tmp/app/bad.cmake" >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log" >&2; exit 1; }
cmake --build "$tmp/app/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
# No LD_LIBRARY_PATH: the imported target's location reaches the program's run path.
"$tmp/app/build/app"
echo "find_package check ok"
