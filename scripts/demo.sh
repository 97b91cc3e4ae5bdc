#!/usr/bin/env bash
# Installs missing Debian packages, builds heed (Release, Ninja, in build/) and runs the main
# demo, heed_demo. Arguments are passed to heed_demo. See scripts/common.sh for the environment
# variables that change the build directory, type and jobs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

heed_deps
heed_configure -DHEED_BUILD_EXAMPLES=ON
cmake --build "$HEED_BUILD_DIR" --target heed_demo -j "$HEED_JOBS"

demo="$(find "$HEED_BUILD_DIR" -type f -name heed_demo -perm -u+x | head -n 1)"
if [[ -z "$demo" ]]; then
  echo "demo.sh: heed_demo was not built" >&2
  exit 1
fi
exec "$demo" "$@"
