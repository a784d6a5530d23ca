#!/usr/bin/env bash
# Installs the machine packages the tests use, when absent: python3 (the
# Python example). Debian packages only; everything else comes from the Go
# module proxy.
set -euo pipefail
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
