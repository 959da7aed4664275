"""The bundled census-income data and the two-pod demo."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import fedplug.data
from fedplug._errors import ConfigError
from fedplug.data import Pod, Schema, combine_pod_schemas, load_adult, write_census_demo

FEATURES = [
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
]
CENSUS_DIR = Path(fedplug.data.__file__).parent / "census"
# The published UCI files (see /work/shared/data/adult/SHA256SUMS): shipped unchanged.
SHA256 = {
    "adult.data.gz": "c7a2b4716a97f930123e0baf879188d701e798172631a654fc703d4b082907f3",
    "adult.test.gz": "8a2c1bffa6e7ce5abfa43881ae5e87c4311ebc2b3cd526c9c40a43f19f06f799",
    "adult.names": "c248284c0b5de30c9e1958d6cdd168a34a654758b620e68f46aefa83fc0a576a",
}


def _packaged_digests() -> dict[str, str]:
    return {n: hashlib.sha256((CENSUS_DIR / n).read_bytes()).hexdigest() for n in SHA256}


@pytest.fixture(scope="module")
def data_demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo") / "pods"
    paths = write_census_demo(directory)
    return directory, paths


@pytest.mark.parametrize(("part", "rows"), [("train", 32_561), ("test", 16_281)])
def test_load_adult_shapes_and_labels(part, rows):
    frame = load_adult(part)

    assert frame.shape == (rows, 15)
    assert list(frame.columns) == [*FEATURES, "TARGET"]
    assert set(frame["TARGET"]) == {"<=50K", ">50K"}
    assert not frame.isna().any().any()
    assert "?" in set(frame["workclass"])
    assert frame["age"].dtype.kind == "i"
    assert not frame["native-country"].str.contains(r"^\s|\s$").any()


def test_load_adult_rejects_unknown_parts():
    with pytest.raises(ConfigError, match="part must be 'train' or 'test', got 'valid'"):
        load_adult("valid")  # type: ignore[arg-type]


def test_packaged_files_are_the_published_ones_with_attribution():
    assert _packaged_digests() == SHA256
    readme = (CENSUS_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Becker" in readme and "Kohavi" in readme


def test_demo_writes_two_pods_and_the_agreed_schema(data_demo):
    directory, paths = data_demo

    assert paths == [
        directory / "census-income-demo.yaml",
        directory / "census-income-yaml-demo.yaml",
    ]
    assert (directory / "census-income.schema.yaml").is_file()
    first, second = (Pod.from_yaml(p) for p in paths)
    assert first.name == "census-income-demo" and second.name == "census-income-yaml-demo"
    assert first.approved_pods == ("census-income-yaml-demo",)
    assert second.approved_pods == ("census-income-demo",)
    assert first.schema is None  # inferred
    assert second.schema == directory / "census-income.schema.yaml"


def test_demo_pods_load_validate_and_combine(data_demo):
    directory, paths = data_demo
    agreed = Schema.from_yaml(directory / "census-income.schema.yaml")

    loaded = [Pod.from_yaml(p).load() for p in paths]
    combined = combine_pod_schemas({pod.name: pod.schema for pod in loaded})

    sizes = [pod.schema.num_rows for pod in loaded]
    assert sum(sizes) == 32_561 and abs(sizes[0] - sizes[1]) <= 1
    assert combined.num_rows == 32_561
    assert combined.columns == [*FEATURES, "TARGET"]
    inferred = loaded[0].schema
    assert inferred.categorical() == agreed.categorical()
    for column in agreed.categorical():
        assert inferred[column].categories == agreed[column].categories, column
    assert combined["TARGET"].categories == ("<=50K", ">50K")
    assert combined.continuous() == [
        "age",
        "fnlwgt",
        "education-num",
        "capital-gain",
        "capital-loss",
        "hours-per-week",
    ]


def test_demo_is_deterministic_and_leaves_the_packaged_files_alone(data_demo, tmp_path):
    directory, _ = data_demo
    before = _packaged_digests()

    write_census_demo(tmp_path, seed=42)

    for name in ("census-income-demo.csv", "census-income-yaml-demo.csv"):
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes()
    assert _packaged_digests() == before
    with pytest.raises(ConfigError, match="is the packaged data folder"):
        write_census_demo(CENSUS_DIR)
    assert sorted(p.name for p in CENSUS_DIR.iterdir() if p.is_file()) == sorted(
        [*SHA256, "README.md"]
    )
