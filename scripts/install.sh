#!/usr/bin/env bash
# Install fedplug (editable) into the active Python environment.
#   bash scripts/install.sh            # the package
#   bash scripts/install.sh ".[test]"  # the package and its test tools
# torch is installed first as the CPU build 2.13.0 when no torch is present, so pip never
# resolves the multi-GB CUDA build; fedplug itself accepts any torch >= 2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.}"
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e "$target"
