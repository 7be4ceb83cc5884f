#!/usr/bin/env bash
# Sets up .venv if needed, then serves the default model (SmolLM2-135M-Instruct) on 127.0.0.1:8000.
# Extra arguments go to `braid serve` (see `.venv/bin/braid serve --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/braid" serve "$@"
