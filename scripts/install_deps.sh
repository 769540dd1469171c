#!/usr/bin/env bash
# install_deps.sh: installs what building and testing lrnn-lib needs on a fresh Debian/Ubuntu
# machine, skipping what is already there: a C/C++ toolchain, CMake, Ninja and GoogleTest from
# apt; torch (2.13.0 unless torch >= 2.11 is already installed) and the test/benchmark tools from pip.
set -euo pipefail

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# torch: keep an installed torch >= 2.11 (the stable-ABI floor of the library); else 2.13.0.
if ! "$PYTHON" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 11))' 2>/dev/null; then
  echo "install_deps: pip install torch==2.13.0"
  "$PYTHON" -m pip install -q torch==2.13.0
fi

need_pip=()
for mod in pytest numpy matplotlib expecttest; do
  "$PYTHON" -c "import $mod" 2>/dev/null || need_pip+=("$mod")
done
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "install_deps: pip install ${need_pip[*]}"
  "$PYTHON" -m pip install -q "${need_pip[@]}"
fi
