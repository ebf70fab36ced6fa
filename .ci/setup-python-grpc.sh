#!/usr/bin/env bash
# Makes a Python virtual environment with the stock gRPC client packages (grpcio,
# grpcio-reflection, protobuf) under <target>/tools/pyenv, for the contract test
# (integration-tests/tests/python_client.rs), and prints its python's path.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/tools/pyenv"
if ! "$venv/bin/python3" -c 'import grpc, grpc_reflection, google.protobuf' 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv >&2
        else
            echo "setup-python-grpc: python3 with venv is needed" >&2
            exit 1
        fi
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
        grpcio grpcio-reflection protobuf >&2
fi
echo "$venv/bin/python3"
