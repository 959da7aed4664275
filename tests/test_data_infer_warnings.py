"""Schema inference warns when a column's inferred type is probably not what it means.

An integer column that looks like codes (few values, each seen often, numbered closely)
is inferred continuous: warned, with the ``force_stypes`` line. A string column that is
mostly numbers (a few "?" markers) is inferred categorical or text: warned, naming the
markers and the fix. A column in ``force_stypes`` is never warned about.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import fedplug
from fedplug.data import Pod, Schema, SchemaWarning, load_adult

ADULT_MEASURES = ("age", "fnlwgt", "capital-gain", "capital-loss", "hours-per-week")


def _infer(frame: pd.DataFrame, **options) -> tuple[Schema, dict[str, str]]:  # noqa: ANN003
    """The schema, and each SchemaWarning's message by the column it names."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = Schema.infer(frame, **options)
    found = {}
    for item in caught:
        assert item.category is SchemaWarning, item.message
        column = str(item.message).split("column '")[1].split("'")[0]
        found[column] = str(item.message)
    return schema, found


def _census_like(rows: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Integer-coded columns of the KDD census-income data, beside real measurements."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "year": rng.choice([94, 95], rows),
            "veterans_benefits": rng.choice([0, 1, 2], rows),
            "detailed_industry_recode": rng.integers(0, 52, rows),
            "age": rng.integers(0, 91, rows),
            "wage_per_hour": rng.choice([0] * 20 + list(range(300, 9999, 37)), rows),
            "capital_losses": rng.choice([0] * 50 + [1408, 1590, 1602, 1719, 1876, 1977], rows),
        }
    )


def test_integer_codes_are_warned_with_the_force_stypes_line():
    schema, found = _infer(_census_like())

    assert sorted(found) == ["detailed_industry_recode", "veterans_benefits", "year"]
    assert all(schema[c].stype == "continuous" for c in found)  # a warning, not a change
    year = found["year"]
    assert year.startswith("Schema.infer: column 'year' holds integers with only 2 distinct")
    assert "(94, 95)" in year
    assert "`force_stypes: {year: categorical}`" in year
    assert "force_stypes={'year': 'categorical'}" in year
    assert "`force_stypes: {year: continuous}`, which silences this warning" in year
    assert "52 distinct values (0, 1, 2, 3, 4, ..., 51)" in found["detailed_industry_recode"]
    assert issubclass(fedplug.SchemaWarning, UserWarning)


def test_forcing_the_stype_either_way_silences_the_warning():
    frame = _census_like()

    schema, found = _infer(
        frame,
        force_stypes={
            "year": "categorical",
            "veterans_benefits": "categorical",
            "detailed_industry_recode": "continuous",
        },
    )

    assert found == {}
    assert schema["year"].categories == (94, 95)


def test_small_tables_and_spread_out_integers_are_not_warned():
    # 52 values on 500 rows, or 2 on 150: each value seen too rarely to tell codes from a
    # measurement. Money amounts: few values, but spread far apart.
    _, found = _infer(_census_like(rows=500)[["detailed_industry_recode", "capital_losses"]])
    assert found == {}

    _, found = _infer(_census_like(rows=150)[["year", "veterans_benefits"]])
    assert found == {}


def test_adult_measures_are_not_warned_and_education_num_is():
    # education-num (1..16) is an ordinal code of education: warned, as a code would be.
    adult = load_adult("train")

    _, found = _infer(adult, name="adult")

    assert sorted(found) == ["education-num"]
    assert found["education-num"].startswith("schema 'adult': column 'education-num'")
    for race, part in adult.groupby("race"):
        _, found = _infer(part)
        assert not set(found) & set(ADULT_MEASURES), race


def test_integral_floats_with_missing_values_count_as_integers():
    frame = _census_like()[["year"]].astype(float)
    frame.loc[::10, "year"] = np.nan

    _, found = _infer(frame)

    assert list(found) == ["year"]


def _pod(tmp_path: Path, frame: pd.DataFrame, datasource: dict | None = None) -> Path:
    frame.to_csv(tmp_path / "hospital.csv", index=False)
    config = {
        "name": "hospital",
        "datasource": {"type": "csv", "path": "hospital.csv", **(datasource or {})},
        "schema": {"infer": {}},
    }
    path = tmp_path / "hospital.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _with_markers(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ages = [str(v) for v in rng.integers(18, 80, rows)]
    ages[5] = ages[77] = "?"
    ages[9] = "unknown"
    return pd.DataFrame({"age": ages, "label": rng.choice(["a", "b"], rows)})


def test_a_numeric_column_with_a_few_strings_is_warned_with_the_fix(tmp_path):
    path = _pod(tmp_path, _with_markers())

    with pytest.warns(SchemaWarning) as caught:
        loaded = Pod.from_yaml(path).load()

    assert loaded.schema["age"].stype == "categorical"
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"pod 'hospital' ({path}): column 'age' was inferred as categorical")
    assert "only 3 of its 400 values are not numbers: '?', 'unknown'" in message
    assert '`na_values: ["?", "unknown"]` under datasource' in message
    assert "`force_stypes: {age: categorical}`" in message

    # The fix it gives works: the markers read as missing, the column is continuous.
    fixed = _pod(tmp_path, _with_markers(), {"na_values": ["?", "unknown"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", SchemaWarning)
        schema = Pod.from_yaml(fixed).load().schema
    assert schema["age"].stype == "continuous"
    assert schema["age"].nullable is True


def test_a_string_column_of_words_is_not_warned():
    frame = pd.DataFrame({"city": ["Lyon", "Paris", "1", "Nice"] * 50})

    _, found = _infer(frame)

    assert found == {}


def test_pod_check_prints_the_warnings(tmp_path, capsys):
    from fedplug.cli._main import main

    frame = _census_like()[["year", "age"]].assign(label=lambda f: f["age"] % 2 == 0)
    path = _pod(tmp_path, frame)

    with warnings.catch_warnings():
        warnings.simplefilter("error", SchemaWarning)  # printed, not passed on
        assert main(["pod", "check", str(path)]) == 0

    out = " ".join(capsys.readouterr().out.split())
    assert "warning: pod 'hospital'" in out
    assert "column 'year' holds integers with only 2 distinct values (94, 95)" in out
    assert "`force_stypes: {year: categorical}`" in out
    assert "ok: pod 'hospital'" in out
