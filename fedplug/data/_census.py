"""The bundled UCI Adult (census income) data and the two-pod census-income demo."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError, DataSourceError
from fedplug.data._schema import Schema
from fedplug.data._yaml import dump_yaml, write_text

CENSUS_DIR = Path(__file__).resolve().parent / "census"
ADULT_FEATURES: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
)
TARGET = "TARGET"
DEMO_POD = "census-income-demo"
DEMO_YAML_POD = "census-income-yaml-demo"
DEMO_SCHEMA_FILE = "census-income.schema.yaml"
_FILES = {"train": "adult.data.gz", "test": "adult.test.gz"}
# education-num is an ordered level (1-16, the years of education), so continuous; saying
# so keeps inference from warning that it may be an integer-coded category.
DEMO_FORCE_STYPES = {"education-num": "continuous"}


def load_adult(part: Literal["train", "test"] = "train") -> pd.DataFrame:
    """The bundled Adult data: 14 feature columns and ``TARGET`` ("<=50K" / ">50K").

    Whitespace is stripped, the test file's first line and its labels' trailing "." are
    dropped, and "?" is kept as an ordinary category (so there are no nulls).
    """
    if part not in _FILES:
        raise ConfigError(f"load_adult: part must be 'train' or 'test', got {part!r}")
    path = CENSUS_DIR / _FILES[part]
    if not path.is_file():
        raise DataSourceError(
            f"the bundled census data file '{path}' is missing; reinstall fedplug"
        )
    try:
        frame = pd.read_csv(
            path,
            header=None,
            names=[*ADULT_FEATURES, TARGET],
            skiprows=1 if part == "test" else 0,
            skipinitialspace=True,
            na_filter=False,  # "?" and everything else stay as written
            compression="gzip",
        )
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataSourceError(
            f"the bundled census data file '{path}' cannot be read ({exc}); reinstall fedplug"
        ) from exc
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].str.strip()
    frame[TARGET] = frame[TARGET].str.rstrip(".")
    return frame


def _demo_assignment(
    frame: pd.DataFrame, categorical: list[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled row positions and, per position, True for the inferred-schema pod.

    The first row (in shuffled order) holding each categorical value goes to the
    inferred-schema pod, so its inferred vocabularies equal the agreed schema file's.
    """
    order = np.random.default_rng(seed).permutation(len(frame))
    shuffled = frame.iloc[order].reset_index(drop=True)
    first_of_value = np.zeros(len(shuffled), dtype=bool)
    for column in categorical:
        first_of_value |= ~shuffled[column].duplicated().to_numpy()
    half = len(shuffled) // 2
    free = np.flatnonzero(~first_of_value)
    to_inferred = first_of_value.copy()
    to_inferred[free[: max(0, half - int(first_of_value.sum()))]] = True
    return order, to_inferred


def _pod_yaml(name: str, other: str, schema: dict[str, Any], comment: str) -> str:
    config = {
        "name": name,
        "datasource": {"type": "csv", "path": f"{name}.csv"},
        "schema": schema,
        "split": {"type": "percentage", "validation": 0.1, "seed": 42},
        "approved_pods": [other],
        "policy": {
            "require_secure_aggregation": False,
            "min_pods": 2,
            "accepted_tasks": ["train", "evaluate"],
        },
    }
    return comment + dump_yaml(config)


DEMO_TEST_FILE = "census-income-test.csv"


#: Every file the demo writes, in the order it writes them.
DEMO_FILES: tuple[str, ...] = (
    DEMO_SCHEMA_FILE,
    f"{DEMO_POD}.csv",
    f"{DEMO_YAML_POD}.csv",
    DEMO_TEST_FILE,
    f"{DEMO_POD}.yaml",
    f"{DEMO_YAML_POD}.yaml",
)


@dataclass(frozen=True)
class DemoFiles:
    """What :func:`write_census_demo_files` did in its folder."""

    pods: list[Path]  # the two pod YAML files
    written: list[Path]  # the files it created
    kept: list[Path]  # demo files that were there already, left exactly as they were


def write_census_demo(directory: str | Path, seed: int = 42) -> list[Path]:
    """Write the two census-income demo pods (CSV + YAML each) and the agreed schema file.

    Also writes ``census-income-test.csv``, the held-out Adult test file with its
    ``TARGET`` column, for scoring a trained model (``fedplug evaluate``); it is no pod.
    Only missing files are written: an existing file (which its user may have edited) is
    never replaced. Returns the paths of the two pod YAML files. The packaged data is
    only read.
    """
    return write_census_demo_files(directory, seed).pods


def write_census_demo_files(directory: str | Path, seed: int = 42) -> DemoFiles:
    """:func:`write_census_demo`, saying which files it wrote and which it kept."""
    directory = Path(directory)
    if directory.resolve() == CENSUS_DIR:
        raise ConfigError(
            f"write_census_demo: '{directory}' is the packaged data folder; write the demo pods "
            "somewhere else (e.g. ./pods)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"write_census_demo: cannot create the folder '{directory}' ({exc.strerror or exc}); "
            "choose a writable location"
        ) from exc
    missing = {name for name in DEMO_FILES if not (directory / name).exists()}
    writers: dict[str, Callable[[Path], object]] = {}
    if missing & {DEMO_SCHEMA_FILE, f"{DEMO_POD}.csv", f"{DEMO_YAML_POD}.csv"}:
        frame = load_adult("train")
        agreed = Schema.infer(frame, name="census-income", force_stypes=DEMO_FORCE_STYPES)
        writers[DEMO_SCHEMA_FILE] = agreed.to_yaml
        # The split is fixed by the seed, so a missing CSV matches the ones that are kept.
        order, to_inferred = _demo_assignment(frame, agreed.categorical(), seed)
        shuffled = frame.iloc[order].reset_index(drop=True)
        for name, part in (
            (DEMO_POD, shuffled[to_inferred]),
            (DEMO_YAML_POD, shuffled[~to_inferred]),
        ):
            writers[f"{name}.csv"] = partial(_write_csv, part)
    if DEMO_TEST_FILE in missing:
        writers[DEMO_TEST_FILE] = lambda path: _write_csv(load_adult("test"), path)

    header = (
        "# fedplug pod: census-income demo (UCI Adult, CC BY 4.0; Becker & Kohavi, 1996).\n"
        "# Written by `fedplug demo census-income`; edit freely.\n"
    )
    inferred = _pod_yaml(
        DEMO_POD,
        DEMO_YAML_POD,
        {"infer": {"max_categories": 100, "force_stypes": dict(DEMO_FORCE_STYPES)}},
        header + "# The schema is inferred from this pod's data.\n",
    )
    from_file = _pod_yaml(
        DEMO_YAML_POD,
        DEMO_POD,
        {"file": DEMO_SCHEMA_FILE},
        header + f"# The schema is the agreed file {DEMO_SCHEMA_FILE}.\n",
    )
    for name, text in ((DEMO_POD, inferred), (DEMO_YAML_POD, from_file)):
        writers[f"{name}.yaml"] = partial(_write_pod_file, text)
    written = [
        directory / name
        for name in DEMO_FILES
        if name in missing and _create(directory / name, writers[name])
    ]
    return DemoFiles(
        pods=[directory / f"{name}.yaml" for name in (DEMO_POD, DEMO_YAML_POD)],
        written=written,
        kept=[directory / name for name in DEMO_FILES if directory / name not in written],
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _write_pod_file(text: str, path: Path) -> None:
    write_text(path, text, what="pod file", error=ConfigError)


def _create(path: Path, write: Callable[[Path], object]) -> bool:
    """Write ``path`` with ``write`` unless it exists; returns whether it was written.

    The file is written whole under a temporary name, then linked into place, which
    fails if the name exists: a file that appears meanwhile is kept, never replaced, and
    nobody sees a half-written file.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create exclusively instead
            try:
                with open(path, "xb") as out:
                    out.write(temporary.read_bytes())
            except FileExistsError:
                return False
        return True
    except OSError as exc:
        raise DataSourceError(
            f"cannot write '{path}' ({exc.strerror or exc}); choose a writable folder"
        ) from exc
    finally:
        temporary.unlink(missing_ok=True)
