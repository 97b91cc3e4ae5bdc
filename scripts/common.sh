# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# Environment:
#   HEED_BUILD_DIR    build directory (default: build/ under the repository root)
#   HEED_BUILD_TYPE   CMAKE_BUILD_TYPE (default: Release)
#   HEED_JOBS         parallel build jobs (default: 2)
#   HEED_CMAKE_ARGS   extra arguments for the CMake configure step
#   HEED_SKIP_DEPS=1  do not check / install the Debian packages

HEED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HEED_BUILD_DIR="${HEED_BUILD_DIR:-$HEED_ROOT/build}"
HEED_BUILD_TYPE="${HEED_BUILD_TYPE:-Release}"
HEED_JOBS="${HEED_JOBS:-2}"

# The Python package (python/, HEED_BUILD_PYTHON) and its tests: pybind11 and NumPy for
# Debian's /usr/bin/python3, pytest to run them, setuptools / wheel / venv / pip for the
# documented offline install (docs/python.md).
HEED_PYTHON_PACKAGES="python3-dev python3-numpy python3-pytest python3-pybind11 pybind11-dev
  python3-setuptools python3-wheel python3-venv python3-pip"

# The libFuzzer targets (tests/fuzz/, scripts/fuzz.sh): clang 14 and its runtimes
# (libclang-rt-14-dev holds libFuzzer and the sanitizers).
HEED_FUZZ_PACKAGES="clang-14 libclang-rt-14-dev"

heed_deps() {
  if [[ "${HEED_SKIP_DEPS:-0}" != 1 ]]; then
    # shellcheck source=install_deps.sh
    HEED_EXTRA_PACKAGES="${HEED_EXTRA_PACKAGES:-} $HEED_PYTHON_PACKAGES" \
      source "$HEED_ROOT/scripts/install_deps.sh"
  fi
}

# heed_configure [cmake args...]: configures $HEED_BUILD_DIR with Ninja (kept as is when the
# directory was already configured with another generator).
heed_configure() {
  local gen=()
  if [[ ! -f "$HEED_BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then
    gen=(-G Ninja)
  fi
  # shellcheck disable=SC2086
  cmake -S "$HEED_ROOT" -B "$HEED_BUILD_DIR" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE="$HEED_BUILD_TYPE" "$@" ${HEED_CMAKE_ARGS:-}
}
