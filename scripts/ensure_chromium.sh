#!/usr/bin/env bash
# Make sure headless Chromium (Debian packages `chromium` + `chromium-driver`) is installed for
# the browser end-to-end test. Called by `make test`; a no-op when /usr/bin/chromium exists.
# Needs root (CI and the dev machines run as root) or passwordless sudo; if neither is
# available it says so and exits 0: the browser test then skips with that reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: no apt-get here; install Chromium yourself to run the browser test" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure_chromium: not root and no sudo; the browser test will be skipped" >&2
    exit 0
  fi
fi
echo "ensure_chromium: installing Debian packages chromium chromium-driver ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null 2>&1 && chromium --version >&2 || true
