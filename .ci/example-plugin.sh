#!/usr/bin/env bash
# Install the example third-party strategy plugin into the active venv, run its tests
# (which use fedplug's conformance kit), and train once with it selected by name.
#
#   . .venv/bin/activate && .ci/example-plugin.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$ROOT/examples/fedplug-example-strategy"
PLUGIN_NAME="fedavg-lr"
PY="${PYTHON:-python}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fedplug-example-plugin.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== fedplug must already be installed in this environment"
"$PY" -c "import fedplug, sys; print('fedplug', fedplug.__version__, 'on', sys.executable)"

echo "== pip install $EXAMPLE"
# Build from a copy, so the source tree gets no build/ or *.egg-info. --no-deps: fedplug
# (and its torch) is already here and pip must not resolve another one.
cp -r "$EXAMPLE" "$WORK/src"
rm -rf "$WORK/src/build" "$WORK/src"/src/*.egg-info
PIP_FLAGS=(--no-deps --disable-pip-version-check --no-input)
if "$PY" -c "import setuptools" 2>/dev/null; then
    PIP_FLAGS+=(--no-build-isolation)
fi
"$PY" -m pip install "${PIP_FLAGS[@]}" "$WORK/src"

echo "== fedplug plugins lists it"
plugins_out="$(COLUMNS=200 fedplug plugins)"
echo "$plugins_out" | grep -E "$PLUGIN_NAME.*fedplug-example-strategy" \
    || { echo "$plugins_out"; echo "FAIL: $PLUGIN_NAME is not listed by fedplug plugins"; exit 1; }

echo "== the example's own tests (fedplug.testing conformance kit)"
(cd "$EXAMPLE" && "$PY" -m pytest -q -p no:cacheprovider tests)

echo "== fedplug run strategy=$PLUGIN_NAME (one short round on the census demo pods)"
mkdir -p "$WORK/run"
(
    cd "$WORK/run"
    FEDPLUG_POD_DIR="$WORK/run/pods" fedplug run "strategy=$PLUGIN_NAME" model.rounds=1 \
        model.epochs=null model.steps=20 "hydra.run.dir=$WORK/run/out"
)
"$PY" - "$WORK/run/out/history.json" "$PLUGIN_NAME" <<'PYEOF'
import json, sys
summary = json.load(open(sys.argv[1]))
strategy = summary["config"]["strategy"]
assert strategy["name"] == sys.argv[2], strategy
assert len(summary["history"]) == 1, summary["history"]
print(f"ran strategy {strategy['name']} with params {strategy['params']}: "
      f"accuracy {summary['history'][-1]['evaluate']['accuracy']:.4f}")
PYEOF
echo "== example plugin: OK"
