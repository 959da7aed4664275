"""fedplug.data: schemas, datasources, validation, splits and pods (no torch, no Flower)."""

from __future__ import annotations

from fedplug.data._census import load_adult, write_census_demo
from fedplug.data._columns import ColumnSpec
from fedplug.data._combine import combine_pod_schemas
from fedplug.data._pod import LoadedPod, Pod, PodPolicy
from fedplug.data._published import published_schemas
from fedplug.data._render import render_schema_table
from fedplug.data._resolve import resolve_pod
from fedplug.data._schema import Schema
from fedplug.data._sources import (
    DATASOURCES,
    CSVSource,
    DataFrameSource,
    Datasource,
    ParquetSource,
    SQLSource,
    datasource_from_config,
)
from fedplug.data._splits import ColumnSplit, PercentageSplit, Split, split_from_config
from fedplug.data._validate import Violation
from fedplug.data._warnings import SchemaWarning

__all__ = [
    "DATASOURCES",
    "CSVSource",
    "ColumnSpec",
    "ColumnSplit",
    "DataFrameSource",
    "Datasource",
    "LoadedPod",
    "ParquetSource",
    "PercentageSplit",
    "Pod",
    "PodPolicy",
    "SQLSource",
    "Schema",
    "SchemaWarning",
    "Split",
    "Violation",
    "combine_pod_schemas",
    "datasource_from_config",
    "load_adult",
    "published_schemas",
    "render_schema_table",
    "resolve_pod",
    "split_from_config",
    "write_census_demo",
]
