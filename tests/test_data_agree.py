"""Schemas without pooling data: pods that inferred their own schemas agree on one.

``combine_pod_schemas(..., vocabularies="union")`` and ``fedplug schema agree`` combine the
pods' published schemas (metadata only); each pod then adopts the agreed file through
``schema.file`` and a model is built and trained on it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fedplug._errors import PodConfigError, SchemaError
from fedplug.data import (
    ColumnSpec,
    DataFrameSource,
    Pod,
    Schema,
    combine_pod_schemas,
    load_adult,
    published_schemas,
)

RACES = ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo")


def _spec(name: str, categories: tuple, nullable: bool = False, dtype: str = "string"):
    return ColumnSpec(name, "categorical", dtype, categories, nullable=nullable)


# -- the union, on schemas -----------------------------------------------------------------


def test_union_combines_vocabularies_in_sorted_order_whatever_the_pod_order():
    a = Schema([_spec("job", ("nurse", "clerk")), ColumnSpec("age", "continuous", "int")])
    b = Schema(
        [_spec("job", ("admin", "nurse"), nullable=True), ColumnSpec("age", "continuous", "float")]
    )

    ab = combine_pod_schemas({"a": a, "b": b}, vocabularies="union")
    ba = combine_pod_schemas({"b": b, "a": a}, vocabularies="union")

    assert ab["job"].categories == ("admin", "clerk", "nurse")
    assert ba["job"].categories == ab["job"].categories
    assert ab["job"].nullable is True  # nullable in any pod
    assert ab["age"].dtype == "float"  # int in one pod, float in the other


def test_union_of_int_categories_sorts_numerically():
    a = Schema([_spec("code", (10, 2), dtype="int")])
    b = Schema([_spec("code", (1, 2), dtype="int")])

    combined = combine_pod_schemas({"a": a, "b": b}, vocabularies="union")

    assert combined["code"].categories == (1, 2, 10)


def test_union_still_requires_equal_stypes_and_every_column():
    a = Schema([_spec("job", ("nurse",)), _spec("city", ("Lyon",))])
    b = Schema([ColumnSpec("job", "text", "string")])

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas({"a": a, "b": b}, vocabularies="union")

    message = str(info.value)
    assert "column 'job': semantic types differ: pod 'a' has categorical, pod 'b' has text" in (
        message
    )
    assert "column 'city' is missing from pod 'b'" in message


def test_exact_is_the_default_and_its_error_points_to_the_union():
    a = Schema([_spec("job", ("nurse", "clerk"))])
    b = Schema([_spec("job", ("nurse",))])

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas({"a": a, "b": b})

    message = str(info.value)
    assert "pod 'a' has extra ['clerk'], pod 'b' lacks it" in message
    assert "vocabularies='union'" in message
    assert "fedplug schema agree" in message


def test_an_unknown_vocabularies_mode_is_named():
    a = Schema([_spec("job", ("nurse",))])

    with pytest.raises(SchemaError, match=r"vocabularies must be one of 'exact', 'union', got"):
        combine_pod_schemas({"a": a}, vocabularies="pooled")


# -- four pods split by race, each inferring its own schema ---------------------------------


@pytest.fixture(scope="module")
def race_split() -> dict[str, pd.DataFrame]:
    adult = load_adult("train").sample(frac=1.0, random_state=3)
    return {
        race.lower(): adult[adult["race"] == race].head(150).reset_index(drop=True)
        for race in RACES
    }


def _write_pods(directory: Path, parts: dict[str, pd.DataFrame]) -> list[Path]:
    paths = []
    for name, frame in parts.items():
        frame.to_csv(directory / f"{name}.csv", index=False)
        config = {
            "name": name,
            "datasource": {"type": "csv", "path": f"{name}.csv"},
            "schema": {"infer": {}},
            "split": {"type": "percentage", "validation": 0.2, "seed": 0},
        }
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        paths.append(path)
    return paths


def _adopt(path: Path, schema_file: str) -> None:
    config = yaml.safe_load(path.read_text())
    config["schema"] = {"file": schema_file}
    path.write_text(yaml.safe_dump(config))


def test_pods_split_by_race_fail_exactly_and_agree_by_union(tmp_path, race_split):
    paths = _write_pods(tmp_path, race_split)
    published = published_schemas(paths)

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas(published)
    message = str(info.value)
    assert "do not agree" in message
    assert "column 'race': vocabularies differ: " in message
    assert (
        "pod 'white' has extra ['White'], pods 'black', 'asian-pac-islander', "
        "'amer-indian-eskimo' lack it" in message
    )
    assert message.count("vocabularies='union'") == 1  # the fix, said once
    assert "column 'native-country': vocabularies differ" in message

    agreed = combine_pod_schemas(published, vocabularies="union")
    assert agreed["race"].categories == tuple(sorted(RACES))
    for column in agreed.categorical():
        held = set().union(*(set(s[column].categories or ()) for s in published.values()))
        assert set(agreed[column].categories or ()) == held
    assert agreed.num_rows == sum(len(frame) for frame in race_split.values())

    # The agreed file is what each pod adopts: every pod validates against it.
    agreed.to_yaml(tmp_path / "agreed.schema.yaml")
    assert Schema.from_yaml(tmp_path / "agreed.schema.yaml") == agreed
    for path in paths:
        _adopt(path, "agreed.schema.yaml")
    loaded = [Pod.from_yaml(path).load() for path in paths]
    for pod in loaded:
        assert pod.schema.columns == agreed.columns
        assert pod.schema["native-country"].categories == agreed["native-country"].categories
    # With one schema file, the exact combination agrees too.
    assert combine_pod_schemas(published_schemas(paths)) == Schema(list(agreed.values()))

    _one_federated_round(agreed, loaded)


def _weighted_mean(parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    total = sum(n for _, n in parts)
    return sum(np.asarray(v, dtype=np.float64) * n for v, n in parts) / total


def _one_federated_round(agreed: Schema, loaded: list) -> None:
    """One FedAvg round over the pods, in process: every pod encodes its data with the
    agreed schema (one index per category everywhere) and trains the same model."""
    from fedplug import DataStructure, TabularClassifier
    from fedplug._task_builder import initial_weights
    from fedplug.learning import PodTrainer, moment_units, scaling_for

    model = TabularClassifier(DataStructure(target="TARGET"), schema=agreed, epochs=None, steps=2)
    task = model.training_task(agreed)

    def trainers(task):  # noqa: ANN001, ANN202
        return [PodTrainer(task, pod.train, pod.validation) for pod in loaded]

    means = _weighted_mean([t.moments() for t in trainers(task)])
    centred = task.with_stats_center(means, moment_units(means))
    task = scaling_for(centred, _weighted_mean([t.moments() for t in trainers(centred)]))
    pods = trainers(task)
    start = initial_weights(task)
    updates = [
        (pod.fit(start, server_round=1)[0], len(p.train))
        for pod, p in zip(pods, loaded, strict=True)
    ]
    averaged = [
        _weighted_mean([(weights[i], n) for weights, n in updates]) for i in range(len(start))
    ]
    for pod in pods:
        metrics = pod.evaluate([w.astype(np.float32) for w in averaged])
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert np.isfinite(metrics["loss"])
    assert any(not np.allclose(a, s) for a, s in zip(averaged, start, strict=True))


# -- published schema files, Pod objects ------------------------------------------------------


def test_a_published_schema_file_stands_for_its_pod(tmp_path, race_split):
    paths = _write_pods(tmp_path, dict(list(race_split.items())[:2]))
    white = Pod.from_yaml(paths[0]).load().schema
    white.to_yaml(tmp_path / "white-published.schema.yaml")

    schemas = published_schemas([tmp_path / "white-published.schema.yaml", paths[1]])

    assert list(schemas) == ["white", "black"]  # the schema's own name: the pod's
    assert schemas["white"] == white


def test_pod_objects_are_accepted_by_the_python_api(race_split, tmp_path):
    from fedplug import combine_pod_schemas as api_combine

    pods = [Pod(name=name, datasource=DataFrameSource(frame)) for name, frame in race_split.items()]

    agreed = api_combine(pods, vocabularies="union")
    with pytest.raises(SchemaError, match="column 'race': vocabularies differ"):
        api_combine(pods)
    assert agreed["race"].categories == tuple(sorted(RACES))

    # Mixed with a pod file, by name.
    (path,) = _write_pods(tmp_path, {"extra": race_split["white"]})
    mixed = api_combine([pods[1], path], vocabularies="union")
    assert set(mixed["race"].categories or ()) == {"White", "Black"}


def test_pods_listed_twice_or_of_an_unknown_kind_are_named(race_split):
    pod = Pod(name="white", datasource=DataFrameSource(race_split["white"]))

    with pytest.raises(PodConfigError, match="pod 'white' is listed more than once"):
        published_schemas([pod, pod])
    with pytest.raises(PodConfigError, match="a pod is given by its name, the path of its YAML"):
        published_schemas([pod, 42])  # type: ignore[list-item]


# -- the command line -------------------------------------------------------------------------


def test_cli_schema_agree_writes_the_union_the_pods_adopt(tmp_path, race_split, capsys):
    from fedplug.cli._main import main

    _write_pods(tmp_path, race_split)
    names = list(race_split)
    out = tmp_path / "agreed.schema.yaml"

    assert main(["schema", "agree", *names, "--dir", str(tmp_path), "-o", str(out)]) == 0

    written = Schema.from_yaml(out)
    expected = combine_pod_schemas(published_schemas(names, [tmp_path]), vocabularies="union")
    assert written == Schema(list(expected.values()))
    err = capsys.readouterr().err
    assert f"wrote {out}" in err.replace("\n", "")
    assert "'race': 4 values ('white' lacks 3" in err
    assert "schema: {file: agreed.schema.yaml}" in err


def test_cli_schema_agree_exact_reports_the_vocabulary_problems(tmp_path, race_split, capsys):
    from fedplug.cli._main import main

    _write_pods(tmp_path, race_split)

    code = main(["schema", "agree", *race_split, "--dir", str(tmp_path), "--vocabularies", "exact"])

    assert code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "error:" in err
    assert "column 'race': vocabularies differ" in err


def test_cli_schema_agree_without_output_prints_the_yaml(tmp_path, race_split, capsys):
    from fedplug.cli._main import main

    paths = _write_pods(tmp_path, dict(list(race_split.items())[:2]))

    assert main(["schema", "agree", *map(str, paths)]) == 0

    printed = Schema.from_dict(yaml.safe_load(capsys.readouterr().out))
    assert set(printed["race"].categories or ()) == {"White", "Black"}


def test_agreeing_leaves_the_sources_unchanged_and_small_pods_warn_nothing(
    tmp_path, race_split, data_digest
):
    paths = _write_pods(tmp_path, race_split)
    before = {p: data_digest(p.with_suffix(".csv")) for p in paths}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # small pods: no inference warning either
        published_schemas(paths)

    assert {p: data_digest(p.with_suffix(".csv")) for p in paths} == before
