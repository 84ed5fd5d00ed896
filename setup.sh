#!/usr/bin/env bash
# Set up tagger on a fresh Debian machine (python3 + pip): system packages, a virtual environment in
# .venv and the package itself. `./setup.sh --test` also installs what the test suite needs.
set -euo pipefail
cd "$(dirname "$0")"

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

apt_packages=(ffmpeg fluidsynth fluid-soundfont-gm musescore-general-soundfont python3-venv)
# PostgreSQL server for the database tests (tests/test_postgres.py starts a private one on loopback);
# GeneralUser GS (minuet-data) and the STK models for the training-source tests.
if [ "${1:-}" = "--test" ]; then apt_packages+=(postgresql minuet-data stk); fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
