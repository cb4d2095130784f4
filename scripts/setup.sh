#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine: venv, Python packages, qcore itself (editable), the offline
# dataset and (with --test) the test-only packages and Debian's Chromium for the browser tests.
# A second run with unchanged requirement files installs nothing and takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1
PY=${PYTHON:-python3}
VENV=.venv

say() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

apt_install() {  # apt_install PACKAGE...: Debian only; returns non-zero where it cannot
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ ! -f "$VENV/.apt-updated" ] || [ -z "$(find "$VENV/.apt-updated" -mmin -1440 2>/dev/null)" ]; then
    as_root apt-get update -qq || return 1
    touch "$VENV/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# 1. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

# 2. Python packages: each requirement file is installed once per content (a stamp per file and hash),
#    so a second run, or `make run` after `make test`, installs nothing.
reqs=(requirements.txt requirements-peers.txt)
[ $want_test = 1 ] && reqs+=(requirements-test.txt requirements-xnnpack.txt requirements-cluster.txt)
# TensorRT (the tensorrt backend) only where a CUDA GPU is listed: elsewhere the backend says it is unavailable and why
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  reqs+=(requirements-gpu.txt)
fi
missing=()
for r in "${reqs[@]}"; do
  [ -f "$VENV/.installed-$r-$(sha256sum < "$r" | cut -c1-16)" ] || missing+=("$r")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (the first time: ~6.5 GB, a few minutes)"
  args=()
  for r in "${missing[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/pip" install -q --disable-pip-version-check "${args[@]}"
  for r in "${missing[@]}"; do touch "$VENV/.installed-$r-$(sha256sum < "$r" | cut -c1-16)"; done
else
  say "python packages up to date"
fi

# 3. qcore itself, installed from this checkout in editable mode (no dependencies: step 2 pinned them), so
#    that `import qcore` finds it from anywhere: bench scripts, the background worker. Once per checkout and
#    pyproject.toml (a stamp like the requirement files'); the tests still import the checkout they run in.
stamp="$VENV/.installed-qcore-$( (pwd; cat pyproject.toml) | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing this checkout's qcore in editable mode"
  isolation=()  # setuptools already in the venv: build with it (offline too); else pip fetches it
  "$VENV/bin/python" -c 'import setuptools' 2>/dev/null && isolation=(--no-build-isolation)
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps ${isolation[@]+"${isolation[@]}"} -e .
  rm -f "$VENV"/.installed-qcore-*
  touch "$stamp"
else
  say "qcore installed (editable)"
fi

# 4. The offline dataset (Fashion-MNIST): $QCORE_DATA, Debian's package, or torchvision's download.
fm_ok() {
  # the common cases without starting Python (importing torch takes seconds)
  for d in "${QCORE_DATA:-}" /usr/share/datasets/fashion-mnist; do
    [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ] && return 0
  done
  "$VENV/bin/python" -c 'import sys, qcore.data as d; sys.exit(0 if d.find_fashion_mnist() else 1)' 2>/dev/null
}
if ! fm_ok; then
  say "Fashion-MNIST not found; trying Debian's dataset-fashion-mnist package"
  apt_install dataset-fashion-mnist || true
fi
if ! fm_ok; then
  say "trying torchvision's download of Fashion-MNIST"
  "$VENV/bin/python" -m qcore fetch-data fashion-mnist || true
fi
if ! fm_ok; then
  say "ERROR: Fashion-MNIST is not available. Install it with 'apt-get install dataset-fashion-mnist'"
  say "(Debian), or put the four IDX .gz files in a folder and set QCORE_DATA to it, or go online once."
  exit 1
fi

# 5. Test-only: Debian's Chromium for the Playwright browser tests (never 'playwright install').
if [ $want_test = 1 ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium for the browser tests"
  apt_install chromium || say "WARNING: could not install chromium; the browser tests will be skipped"
fi
say "ready"
