"""The plugin registry: entry points per kind, import paths, and its three errors.

Third-party distributions are faked with real ``*.dist-info`` directories on sys.path, so
``importlib.metadata`` finds them exactly as it finds an installed package.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedplug import ConfigError, PluginError
from fedplug._plugins import (
    KINDS,
    PLUGIN_API_VERSION,
    SUPPORTED_PLUGIN_APIS,
    available,
    list_plugins,
    load_plugin,
    resolve,
)

_counter = itertools.count()

FACTORY = """
def factory(n_pods, **params):
    raise RuntimeError("this fake factory is never called")
"""

FakeDist = Callable[..., str]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """Install a fake distribution: ``make(dist, plugins, api=1, version="1.0") -> module``.

    ``plugins`` maps a kind to entry-point names; each points at ``<module>:factory``.
    """
    site = tmp_path / "site"
    site.mkdir()
    modules: list[str] = []

    def make(
        dist: str,
        plugins: dict[str, list[str]],
        api: object = 1,
        version: str = "1.0",
        source: str | None = None,
    ) -> str:
        module = f"fedplug_fake_plugin_{next(_counter)}"
        modules.append(module)
        body = source if source is not None else FACTORY
        if api is not None:
            body += f"\nfactory.fedplug_plugin_api = {api!r}\n"
        (site / f"{module}.py").write_text(body)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = []
        for kind, names in plugins.items():
            lines.append(f"[fedplug.{kind}]")
            lines += [f"{name} = {module}:factory" for name in names]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "top_level.txt").write_text(module + "\n")
        monkeypatch.syspath_prepend(str(site))
        return module

    yield make
    for module in modules:
        sys.modules.pop(module, None)


# -- the project's own plugins ---------------------------------------------------------------
def test_project_plugins_register_through_entry_points_and_declare_the_api() -> None:
    own = [r for r in list_plugins() if r.distribution == "fedplug"]
    assert {r.kind for r in own} == set(KINDS)
    for record in own:
        plugin, info = resolve(record.kind, record.name)
        assert plugin.fedplug_plugin_api in SUPPORTED_PLUGIN_APIS[record.kind], record
        assert info == record
    assert {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox"} <= set(
        available("strategies")
    )
    assert {"fedavg", "secure"} <= set(available("aggregators"))
    assert "tabular-classifier" in available("models")
    assert {"csv", "parquet", "dataframe", "sql"} <= set(available("datasources"))


def test_supported_versions() -> None:
    assert PLUGIN_API_VERSION == 2
    # Version 2 changed the aggregator and model contracts: strategies and datasources
    # written for 1 still load.
    assert {
        "strategies": {1, 2},
        "models": {2},
        "datasources": {1, 2},
        "aggregators": {2},
        "pod_models": {2},
    } == SUPPORTED_PLUGIN_APIS


# -- unknown names ---------------------------------------------------------------------------
def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(
        PluginError, match="unknown strategy 'fedavgg' \\(did you mean 'fedavg'"
    ) as info:
        load_plugin("strategies", "fedavgg")
    message = str(info.value)
    for name in ("fedavg", "fedadam", "fedprox"):
        assert repr(name) in message
    assert "fedplug plugins" in message


def test_unknown_aggregator_lists_fedavg_and_secure() -> None:
    with pytest.raises(PluginError, match=r"unknown aggregator 'plain'.*'fedavg', 'secure'"):
        load_plugin("aggregators", "plain")


def test_unknown_kind() -> None:
    with pytest.raises(PluginError, match=r"unknown plugin kind 'strategy'.*'strategies'"):
        available("strategy")


# -- duplicates ------------------------------------------------------------------------------
def test_two_distributions_claiming_one_name_is_an_error_naming_both(fake_dist: FakeDist) -> None:
    fake_dist("acme-strategies", {"strategies": ["fedcool"]}, version="1.2")
    fake_dist("other-strategies", {"strategies": ["fedcool"]}, version="0.3")
    with pytest.raises(PluginError, match="claimed by several distributions") as info:
        load_plugin("strategies", "fedcool")
    message = str(info.value)
    assert "'acme-strategies' 1.2" in message and "'other-strategies' 0.3" in message
    assert "'fedcool'" in message
    # Listing still works, and shows both claims.
    claims = [r for r in list_plugins("strategies") if r.name == "fedcool"]
    assert sorted(r.distribution for r in claims) == ["acme-strategies", "other-strategies"]


def test_a_third_party_claiming_a_builtin_name_is_a_conflict(fake_dist: FakeDist) -> None:
    fake_dist("shadowing-plugin", {"aggregators": ["secure"]})
    with pytest.raises(PluginError, match=r"'secure'.*claimed by several") as info:
        load_plugin("aggregators", "secure")
    assert "'fedplug'" in str(info.value) and "'shadowing-plugin'" in str(info.value)


# -- plugin API versions ---------------------------------------------------------------------
def test_incompatible_plugin_api_is_refused_with_the_supported_versions(
    fake_dist: FakeDist,
) -> None:
    module = fake_dist("future-plugin", {"strategies": ["fedfuture"]}, api=3, version="3.0")
    with pytest.raises(PluginError, match=r"plugin API version 3") as info:
        load_plugin("strategies", "fedfuture")
    message = str(info.value)
    assert "'fedfuture'" in message
    assert f"{module}:factory" in message
    assert "'future-plugin' 3.0" in message
    assert "supports strategy plugin API version(s) [1, 2]" in message


def test_an_aggregator_written_for_plugin_api_1_is_refused_with_what_changed(
    fake_dist: FakeDist,
) -> None:
    fake_dist("old-aggregator", {"aggregators": ["oldagg"]}, api=1, version="0.9")
    with pytest.raises(PluginError, match=r"plugin API version 1") as info:
        load_plugin("aggregators", "oldagg")
    message = str(info.value)
    assert "supports aggregator plugin API version(s) [2]" in message
    assert "setup(grid, session) returns the run's state" in message
    assert "docs/writing-a-plugin.md" in message
    assert "'old-aggregator'" in message


def test_other_kinds_written_for_plugin_api_1_still_load(fake_dist: FakeDist) -> None:
    module = fake_dist("older-strategy", {"strategies": ["fedolder"]}, api=1)
    assert load_plugin("strategies", "fedolder") is sys.modules[module].factory


def test_missing_plugin_api_is_refused(fake_dist: FakeDist) -> None:
    fake_dist("old-plugin", {"models": ["oldnet"]}, api=None)
    with pytest.raises(PluginError, match=r"does not declare.*fedplug_plugin_api = 2") as info:
        load_plugin("models", "oldnet")
    assert "'old-plugin'" in str(info.value) and "[2]" in str(info.value)


def test_a_model_written_for_plugin_api_1_is_refused_with_what_changed(fake_dist: FakeDist) -> None:
    fake_dist("old-model", {"models": ["oldmlp"]}, api=1)
    with pytest.raises(PluginError, match=r"version\(s\) \[2\].*fedplug.pod_models"):
        load_plugin("models", "oldmlp")


def test_non_integer_plugin_api_is_refused(fake_dist: FakeDist) -> None:
    fake_dist("odd-plugin", {"datasources": ["odd"]}, api="1")
    with pytest.raises(PluginError, match=r"fedplug_plugin_api='1', which is not an integer"):
        load_plugin("datasources", "odd")


def test_import_paths_are_checked_the_same_way(fake_dist: FakeDist) -> None:
    module = fake_dist("future-plugin", {}, api=7)
    with pytest.raises(PluginError, match=r"plugin API version 7.*\[1, 2\]") as info:
        load_plugin("strategies", f"{module}:factory")
    assert "'future-plugin'" in str(info.value)


# -- loading ---------------------------------------------------------------------------------
def test_third_party_plugin_loads_by_name(fake_dist: FakeDist) -> None:
    module = fake_dist("acme-strategies", {"strategies": ["fedcool"]}, version="1.2")
    plugin, info = resolve("strategies", "fedcool")
    assert plugin is sys.modules[module].factory
    assert (info.kind, info.name, info.target) == ("strategies", "fedcool", f"{module}:factory")
    assert (info.distribution, info.version) == ("acme-strategies", "1.2")


@pytest.mark.parametrize(
    "path", ["fedplug_strategies.flower:fedadam", "fedplug_strategies.flower.fedadam"]
)
def test_target_import_paths(path: str) -> None:
    from fedplug_strategies.flower import fedadam

    plugin, info = resolve("strategies", path)
    assert plugin is fedadam
    assert info.target == "fedplug_strategies.flower:fedadam"
    assert info.distribution == "fedplug"


def test_dotted_path_finds_the_longest_importable_module() -> None:
    from fedplug._flower import SecureAggregator

    plugin, info = resolve("aggregators", "fedplug._flower._aggregators.SecureAggregator")
    assert plugin is SecureAggregator
    assert info.target == "fedplug._flower._aggregators:SecureAggregator"


def test_import_path_whose_module_fails_is_a_plugin_error(fake_dist: FakeDist) -> None:
    module = fake_dist("crashing-plugin", {}, source="raise ValueError('bad config')\n")
    with pytest.raises(PluginError, match=r"importing .* failed: ValueError: bad config"):
        load_plugin("strategies", f"{module}:factory")


def test_bad_import_path_names_it_and_lists_plugins() -> None:
    with pytest.raises(PluginError, match=r"cannot import strategy 'nowhere\.mod:thing'") as info:
        load_plugin("strategies", "nowhere.mod:thing")
    assert "'fedavg'" in str(info.value)
    with pytest.raises(PluginError, match="has no attribute 'nothing'"):
        load_plugin("strategies", "fedplug_strategies.flower:nothing")


def test_listing_is_lazy_and_import_failures_are_plugin_errors(fake_dist: FakeDist) -> None:
    module = fake_dist(
        "broken-plugin", {"strategies": ["fedbroken"]}, source="raise RuntimeError('boom')\n"
    )
    record = next(r for r in list_plugins("strategies") if r.name == "fedbroken")
    assert record.distribution == "broken-plugin"
    assert module not in sys.modules
    with pytest.raises(PluginError, match=r"'fedbroken'.*failed to import: RuntimeError: boom"):
        load_plugin("strategies", "fedbroken")


def test_a_plugin_must_be_callable(fake_dist: FakeDist) -> None:
    fake_dist(
        "constant-plugin",
        {"strategies": ["fedconst"]},
        api=None,
        source="class _C:\n    fedplug_plugin_api = 1\nfactory = _C()\n",
    )
    with pytest.raises(PluginError, match=r"'fedconst'.*not a class or factory"):
        load_plugin("strategies", "fedconst")


# -- the command line ------------------------------------------------------------------------
def test_fedplug_plugins_lists_every_kind_with_distributions(
    fake_dist: FakeDist, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedplug.cli._main import main
    from fedplug.cli._plugins import console

    fake_dist("acme-strategies", {"strategies": ["fedcool"]}, version="1.2")
    fake_dist("other-strategies", {"strategies": ["fedcool"]}, version="0.3")
    console.width = 200  # rich wraps to the terminal; keep rows on one line
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert f"fedplug.{kind}" in out
    for text in (
        "tabular-classifier",
        "fedplug._flower:SecureAggregator",
        "acme-strategies",
        "other-strategies",
        "1.2",
        "claimed twice",
    ):
        assert text in out
    assert "strategy 'fedcool': claimed" in out


def test_run_config_names_a_plugin_by_name_or_target() -> None:
    from fedplug._task_builder import plugin_ref as _plugin_ref

    assert _plugin_ref({"name": "fedavg", "params": {}}, "strategy") == "fedavg"
    target = {"_target_": "fedplug_strategies.flower:fedadam", "params": {"eta": 0.1}}
    ref = _plugin_ref(target, "strategy")
    assert load_plugin("strategies", ref).__name__ == "fedadam"
    assert target == {"params": {"eta": 0.1}}  # the reference is popped, params remain
    with pytest.raises(ConfigError, match=r"strategy config must give exactly one of `name`"):
        _plugin_ref({"name": "fedavg", "_target_": "a.b:c"}, "strategy")
    with pytest.raises(ConfigError, match=r"aggregator config.*got name=None, _target_=None"):
        _plugin_ref({"params": {}}, "aggregator")
