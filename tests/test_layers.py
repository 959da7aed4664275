"""The layers of DESIGN.md, checked on the source: each imports only the ones below it.

1 data, 2 learning, 3 secure-aggregation core, 4 Flower adapters, 5 front ends (the Python
API, the CLI, the task builder, and ``fedplug._flower.app``, the Flower App that Flower
loads by import path). Beside them: errors, the shared validation helpers, version and the
plugin registry (imported by all, importing none of the layers), and the conformance kit
(``fedplug.testing``, which may use everything). Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fedplug

PACKAGE = Path(fedplug.__file__).resolve().parent
LAYERS = {
    "data": 1,
    "learning": 2,
    "secagg": 3,
    "_flower": 4,
    "_api": 5,
    "_federation": 5,
    "cli": 5,
    "_task_builder": 5,
    "_trees": 5,
    "_torch_module": 5,
    "_regressor": 5,
    "_model_base": 5,
    "_network_model": 5,
    "_run_outputs": 5,
    "_config_checks": 5,
    "_errors": 0,
    "_validation": 0,
    "_version": 0,
    "_plugins": 0,
    "_lazy": 0,
    "plugins": 5,
    "testing": 6,
}
#: Third-party packages a layer must not import (the secure-aggregation core stays free of
#: Flower and torch so it can be tested exhaustively).
FORBIDDEN = {1: {"torch", "flwr"}, 2: {"flwr"}, 3: {"torch", "flwr"}, 0: {"torch", "flwr"}}


def _layer(module: str) -> int:
    parts = module.split(".")
    if module == "fedplug" or module.startswith("fedplug._flower.app"):
        return 5
    return LAYERS[parts[1]]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("fedplug", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> list[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.append(".".join([*base, *([node.module] if node.module else [])]))
            else:
                names.append(str(node.module))
    return names


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        assert _layer(module) in range(7), module


def _upward(module: str, names: list[str]) -> list[str]:
    mine = _layer(module)
    return [
        f"{module} -> {name}"
        for name in names
        if name.split(".")[0] == "fedplug" and mine != 6 and _layer(name) > mine
    ]


def test_no_layer_imports_a_layer_above_it() -> None:
    upward = []
    for module, path in _modules().items():
        upward += _upward(module, _imports(module, path))
    assert upward == []


def test_the_lower_layers_import_neither_flower_nor_torch() -> None:
    found = []
    for module, path in _modules().items():
        banned = FORBIDDEN.get(_layer(module), set())
        found += [f"{module} -> {n}" for n in _imports(module, path) if n.split(".")[0] in banned]
    assert found == []


def test_the_check_catches_upward_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "_task.py"
    source.write_text(
        "from ..secagg import Q\n"
        "def f():\n"
        "    from fedplug._flower import run_plan\n"
        "    import fedplug.cli\n"
    )
    names = _imports("fedplug.learning._task", source)
    assert names == ["fedplug.secagg", "fedplug._flower", "fedplug.cli"]
    assert _upward("fedplug.learning._task", names) == [
        "fedplug.learning._task -> fedplug.secagg",
        "fedplug.learning._task -> fedplug._flower",
        "fedplug.learning._task -> fedplug.cli",
    ]
    assert _upward("fedplug._flower._server", ["fedplug.secagg", "fedplug.data"]) == []


def test_only_the_cli_imports_the_cli() -> None:
    # The Python API, the task builder, the models and the ServerApp of `flwr run` are
    # front ends beside the CLI, not above it: what they share lives below both.
    found = []
    for module, path in _modules().items():
        if module.startswith("fedplug.cli") or _layer(module) == 6:
            continue
        found += [f"{module} -> {n}" for n in _imports(module, path) if n.startswith("fedplug.cli")]
    assert found == []
