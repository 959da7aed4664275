"""fedplug.data is layer 1: its public names exist, and it imports neither torch nor flwr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fedplug.data

ROOT = Path(fedplug.data.__file__).resolve().parents[2]


def test_public_names_are_exported():
    expected = {
        "ColumnSpec", "Schema", "Violation", "combine_pod_schemas", "Datasource", "CSVSource",
        "ParquetSource", "DataFrameSource", "SQLSource", "DATASOURCES", "datasource_from_config",
        "Split", "PercentageSplit", "ColumnSplit", "split_from_config", "PodPolicy", "Pod",
        "LoadedPod", "render_schema_table", "resolve_pod", "load_adult", "write_census_demo",
        "SchemaWarning", "published_schemas",
    }  # fmt: skip

    assert set(fedplug.data.__all__) == expected
    assert all(hasattr(fedplug.data, name) for name in expected)


def test_importing_the_data_layer_pulls_in_no_torch_and_no_flower():
    code = (
        "import sys, fedplug.data; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'flwr')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
