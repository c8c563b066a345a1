#!/bin/sh
# Install the build into a temporary prefix, then build and run a program
# against libsluice through pkg-config the way a user would, and check that
# the library exports only its public API.
#   install_check.sh BUILD_DIR C_COMPILER
set -eu
build=$1
cc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name sluice.pc)
test -n "$pc"
export PKG_CONFIG_PATH=$(dirname "$pc")
cp "$(dirname "$0")/install_app.c" "$tmp/app.c"
"$cc" -std=c11 -Wall -Wextra -Werror "$tmp/app.c" -o "$tmp/app" $(pkg-config --cflags --libs sluice)
LD_LIBRARY_PATH=$(pkg-config --variable=libdir sluice) "$tmp/app"
# Only the public API is exported.
lib=$(pkg-config --variable=libdir sluice)/libsluice.so
bad=$(nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}' |
      grep -v -E '^(sl_client_|sl_backoff_|sl_result_destroy$|sl_cluster_status_destroy$|sl_status_str$)' || true)
if [ -n "$bad" ]; then
    echo "libsluice exports internal symbols: $bad" >&2
    exit 1
fi
echo "install check ok"
