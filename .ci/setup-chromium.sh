#!/usr/bin/env bash
# Installs headless Chromium (and a font for it) from Debian's packages when it is
# missing: `crates/cli/tests/html.rs` opens the HTML reports in it. Run as root on a
# Debian machine (CI); elsewhere it says what to install and, outside CI, carries on
# (the test then skips loudly; with CI=true it fails instead).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-chromium: chromium is missing; install it (Debian: apt-get install chromium)" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium fonts-dejavu-core >/dev/null
command -v chromium
