#!/usr/bin/env bash
# Headless Chromium for the HTML report test (tests/unit/test_eval_report.py): Debian's `chromium`
# package, installed once (a no-op when it is there). Needs root (or sudo) and apt-get; where it
# cannot install, it says so and the test skips, except under CI (CI set), where the test fails.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
  echo "scripts/browser.sh: installing chromium (apt-get) for the HTML report test" >&2
  if $SUDO apt-get update -qq >&2 \
    && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2; then
    exit 0
  fi
fi
echo "scripts/browser.sh: chromium is not installed and could not be installed here (needs apt-get and root);" \
  "the HTML report browser test will skip, or fail under CI" >&2
