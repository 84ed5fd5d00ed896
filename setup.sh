#!/usr/bin/env bash
# Set up tagger on a fresh Debian machine (python3 + pip): system packages, a virtual environment in
# .venv and the package itself. `./setup.sh --test` also installs what the test suite needs.
# `sh setup.sh` (dash) stopped at once with "set: Illegal option -o pipefail": run again under bash
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "setup.sh: error: $*" >&2; exit 1; }
new_enough='import sys; sys.exit(sys.version_info < (3, 11))'  # tagger's requires-python
command -v python3 >/dev/null || die "python3 not found: install it (apt-get install python3), then run $0 again"
python3 -c "$new_enough" || die "python3 is $(python3 -V 2>&1): tagger needs Python 3.11 or later"

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
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "the Debian packages ${missing[*]} are missing and there is no sudo to install them: as root, apt-get install ${missing[*]}; then run $0 again"
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# An existing .venv is used as it is (never removed: it may hold someone's work), when its Python runs
# and is new enough; one made without pip (python3 -m venv --without-pip) gets it from ensurepip.
if { [ ! -e .venv ] && [ ! -L .venv ]; } || { [ -d .venv ] && [ -z "$(ls -A .venv)" ]; }; then
  python3 -m venv .venv
elif ! .venv/bin/python -c "$new_enough" 2>/dev/null; then
  if [ ! -d .venv ]; then reason="is not a folder"
  elif .venv/bin/python -V >/dev/null 2>&1; then reason="runs $(.venv/bin/python -V 2>&1), and tagger needs Python 3.11 or later"
  else reason="is no virtual environment whose Python runs (made by a Python since removed or moved?)"; fi
  die "$PWD/.venv $reason: move it away (or remove it), then run $0 again"
fi
.venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
