"""``fedplug pod start --help`` (and its siblings) print their own usage, not a garbled one."""

from __future__ import annotations

import pytest

from fedplug.cli._main import main


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_pod_start_help_is_its_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "pod", "start")
    assert text.startswith("usage: fedplug pod start [-h] --superlink HOST:PORT")
    assert "POD.yaml" in text and "--root-certificates CA.pem" in text
    assert "keeps the pod's validated data in memory" in text
    assert "commands:" not in text  # the top-level usage is not pasted in front


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (("pod",), "usage: fedplug pod [-h] pod_command ..."),
        (("pod", "check"), "usage: fedplug pod check [-h] pod_file"),
        (("demo",), "usage: fedplug demo [-h]"),
    ],
)
def test_subcommand_usages_name_the_subcommand(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], usage: str
) -> None:
    assert _help(capsys, *args).startswith(usage)


def test_a_missing_argument_names_what_pod_start_needs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pod", "start"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "fedplug pod start: error: the following arguments are required: POD.yaml, --superlink"
        in err
    )
