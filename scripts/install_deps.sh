#!/usr/bin/env bash
# Installs the Debian packages heed needs to build, test and benchmark, if any are missing.
#
# Idempotent: checks every package with `dpkg -s` first and does nothing (not even
# `apt-get update`) when all are present. Uses sudo only when not root and sudo exists.
# Can be executed or sourced (scripts/demo.sh and scripts/test.sh source it).
#
# Extra packages can be appended with HEED_EXTRA_PACKAGES="pkg1 pkg2".

heed_install_deps() {
  local pkgs=(g++ cmake ninja-build pkg-config libeigen3-dev libxsimd-dev libgtest-dev
              libbenchmark-dev)
  # shellcheck disable=SC2206
  [[ -n "${HEED_EXTRA_PACKAGES:-}" ]] && pkgs+=(${HEED_EXTRA_PACKAGES})

  if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_deps: not a Debian/Ubuntu system (no dpkg/apt-get); install these yourself:" \
      "${pkgs[*]}" >&2
    return 0
  fi

  local missing=() p
  for p in "${pkgs[@]}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
      missing+=("$p")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install_deps: all packages present"
    return 0
  fi

  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo -n)
      # -n fails instead of prompting; allow a prompt when a terminal is attached.
      [[ -t 0 ]] && sudo=(sudo)
    else
      echo "install_deps: missing ${missing[*]}, and not root and no sudo; install them" \
        "yourself" >&2
      return 1
    fi
  fi

  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" </dev/null || return 1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  heed_install_deps
else
  heed_install_deps || return 1
fi
