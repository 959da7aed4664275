#!/usr/bin/env bash
# Install the example third-party model plugin into the active venv, run its tests (which
# use fedplug's conformance kit, check_model), and train once with it selected by name on
# the census demo pods, after doing what their owners do to accept it.
#
#   . .venv/bin/activate && .ci/example-model.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$ROOT/examples/fedplug-example-model"
DIST="fedplug-example-model"
PLUGIN_NAME="ridge-classifier"
PY="${PYTHON:-python}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fedplug-example-model.XXXXXX")"
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

echo "== fedplug plugins lists both halves"
plugins_out="$(COLUMNS=200 fedplug plugins)"
for target in RidgeClassifier RidgePod; do
    echo "$plugins_out" | grep -E "^$PLUGIN_NAME +fedplug_example_model:$target +$DIST " \
        || { echo "$plugins_out"; echo "FAIL: $PLUGIN_NAME ($target) is not listed by fedplug plugins"; exit 1; }
done

echo "== the example's own tests (fedplug.testing conformance kit, central closed form)"
(cd "$EXAMPLE" && PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -q -p no:cacheprovider tests)

echo "== the pods' owners accept $PLUGIN_NAME (the default policy accepts only the built-ins)"
mkdir -p "$WORK/run"
fedplug demo census-income --dir "$WORK/run/pods" >/dev/null
"$PY" - "$WORK/run/pods" "$PLUGIN_NAME" <<'PYEOF'
import sys
from pathlib import Path

import yaml
from fedplug import PodPolicy

pods, name = Path(sys.argv[1]), sys.argv[2]
for pod in ("census-income-demo", "census-income-yaml-demo"):
    path = pods / f"{pod}.yaml"
    config = yaml.safe_load(path.read_text())
    policy = config.setdefault("policy", {})
    policy["accepted_models"] = [*PodPolicy().accepted_models, name]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{path.name}: policy.accepted_models = {policy['accepted_models']}")
PYEOF

echo "== fedplug run model=ridge aggregator=secure (one exchange on the census demo pods)"
(
    cd "$WORK/run"
    FEDPLUG_POD_DIR="$WORK/run/pods" fedplug run model=ridge aggregator=secure \
        "hydra.run.dir=$WORK/run/out"
)
"$PY" - "$WORK/run/out/history.json" "$PLUGIN_NAME" <<'PYEOF'
import json, sys
summary = json.load(open(sys.argv[1]))
model = summary["config"]["model"]
assert model["name"] == sys.argv[2], model
assert len(summary["history"]) == 1, summary["history"]
accuracy = summary["history"][-1]["evaluate"]["accuracy"]
# A floor, not the result: the majority class alone scores about 0.76 on these pods.
assert accuracy > 0.8, f"validation accuracy {accuracy:.4f}: the model did not learn"
print(f"ran model {model['name']} with alpha={model['alpha']}: validation accuracy {accuracy:.4f}")
PYEOF

echo "== fedplug evaluate loads the saved model by the plugin it names"
(cd "$WORK/run" && fedplug evaluate out/model.pt pods/census-income-test.csv)
echo "== example model plugin: OK"
