#!/usr/bin/env bash
# Installs the machine packages the tests use, when absent: python3 (the
# Python example), and for the Python library (python/) Debian's
# python3-kubernetes, python3-pytest and python3-yaml, plus python3-setuptools
# and python3-wheel for `make python-wheel`. Debian packages only; everything
# else comes from the Go module proxy. The Python tests use /usr/bin/python3,
# where Debian's packages install.
set -euo pipefail
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
py=/usr/bin/python3
have() { [ -x "$py" ] && "$py" -c "import $1" >/dev/null 2>&1; }
have kubernetes || need+=(python3-kubernetes)
have pytest || need+=(python3-pytest)
have yaml || need+=(python3-yaml)
have setuptools || need+=(python3-setuptools)
have wheel || need+=(python3-wheel)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
