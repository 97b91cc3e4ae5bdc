#!/usr/bin/env bash
# Installs missing Debian packages, configures heed with its tests and the Python package
# (Release, Ninja, in build/), builds everything and runs the whole suite with ctest. Arguments are passed to ctest (e.g.
# `scripts/test.sh -R dense`). See scripts/common.sh for the environment variables that change
# the build directory, type and jobs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

heed_deps
# HEED_BUILD_PYTHON: the Python package and its pytest suite (ctest: heed_python_pytest).
heed_configure -DHEED_BUILD_TESTS=ON -DHEED_BUILD_PYTHON=ON
cmake --build "$HEED_BUILD_DIR" -j "$HEED_JOBS"
cd "$HEED_BUILD_DIR"
ctest --output-on-failure -j "$HEED_JOBS" "$@"
