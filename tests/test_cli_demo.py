"""The demo pods are written only where they are missing: a user's edits are never lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedplug.cli._main import main
from fedplug.data._census import DEMO_FILES, write_census_demo_files

EDITED = "# my own pod file, edited by hand\n"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo") / "pods"
    done = write_census_demo_files(directory)
    assert sorted(p.name for p in done.written) == sorted(DEMO_FILES) and done.kept == []
    return directory


def _copy(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in DEMO_FILES:
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_demo_into_a_folder_with_the_files_keeps_them_and_says_so(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = _copy(demo_dir, tmp_path / "pods")
    (pods / "census-income-demo.yaml").write_text(EDITED)
    (pods / "census-income-yaml-demo.csv").unlink()

    assert main(["demo", "census-income", "--dir", str(pods)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (pods / "census-income-demo.yaml").read_text() == EDITED  # not reverted
    # The missing file is written again, identical to the demo's (the split is seeded).
    rewritten = pods / "census-income-yaml-demo.csv"
    assert rewritten.read_bytes() == (demo_dir / "census-income-yaml-demo.csv").read_bytes()
    assert f"wrote the census-income demo to {pods}/: {rewritten}" in out
    assert "kept 5 file(s)" in out and str(pods / "census-income-demo.yaml") in out
    assert not [p for p in pods.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_typo_in_a_pod_name_fails_before_anything_is_written(
    demo_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDPLUG_POD_DIR", raising=False)
    pods = _copy(demo_dir, tmp_path / "pods")
    (pods / "census-income-demo.yaml").write_text(EDITED)
    before = {p.name: p.read_bytes() for p in pods.iterdir()}

    code = main(["run", "pods.identifiers=[census-income-demo,census-incom-yaml-demo]"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert "pod 'census-incom-yaml-demo' not found (did you mean 'census-income-yaml-demo'?)" in err
    assert "Nothing was written" in err
    assert {p.name: p.read_bytes() for p in pods.iterdir()} == before

    # In an empty folder too: the typo is reported and no demo file appears.
    empty = tmp_path / "fresh"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert main(["run", "pods.identifiers=[census-income-demo,typo]"]) == 1
    assert "pod 'typo' not found" in " ".join(capsys.readouterr().err.split())
    assert not (empty / "pods").exists()
