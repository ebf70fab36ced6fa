#!/usr/bin/env bash
# Installs the buf CLI (published on npm as @bufbuild/buf) under target/tools/buf
# when it is missing, and prints the path of the `buf` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="$(realpath -m "${CARGO_TARGET_DIR:-target}")/tools/buf"
bin="$prefix/node_modules/.bin/buf"
if [ ! -x "$bin" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y npm >&2
        else
            echo "setup-buf: npm is needed to install @bufbuild/buf" >&2
            exit 1
        fi
    fi
    mkdir -p "$prefix"
    npm install --silent --no-audit --no-fund --prefix "$prefix" @bufbuild/buf@1 >&2
fi
echo "$bin"
