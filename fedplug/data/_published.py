"""``published_schemas``: what each pod publishes about its data, gathered by pod name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fedplug._errors import PodConfigError
from fedplug.data._pod import Pod
from fedplug.data._resolve import resolve_pod
from fedplug.data._schema import Schema
from fedplug.data._text import quoted, short_value
from fedplug.data._yaml import read_yaml

PodRef = str | Path | Pod


def _is_schema_file(data: object) -> bool:
    # A pod file always has a datasource; a schema file has columns and never one.
    return isinstance(data, Mapping) and "columns" in data and "datasource" not in data


def _published(ref: PodRef, search_dirs: Sequence[Path] | None) -> tuple[str, Schema]:
    if isinstance(ref, Pod):
        return ref.name, ref.load().schema
    if not isinstance(ref, (str, Path)):
        raise PodConfigError(
            f"a pod is given by its name, the path of its YAML file, a published schema file "
            f"or a fedplug.Pod object, got {short_value(ref)}"
        )
    path = resolve_pod(ref, search_dirs)
    data = read_yaml(
        path,
        what="pod file",
        error=PodConfigError,
        fix="check the path, or run `fedplug demo census-income` to write the demo pods",
    )
    if _is_schema_file(data):
        schema = Schema.from_yaml(path)
        stem = path.stem.removesuffix(".schema")
        return schema.name or stem, schema
    pod = Pod.from_dict(data, path.parent, source_path=path)
    return pod.name, pod.load().schema


def published_schemas(
    pods: Sequence[PodRef], search_dirs: Sequence[Path] | None = None
) -> dict[str, Schema]:
    """Each pod's published schema (metadata only), by pod name, in the order given.

    A pod is a ``Pod`` object, a pod name (looked up in ``search_dirs``, default
    ``$FEDPLUG_POD_DIR`` then ``./pods``), the path of a pod YAML file, or a schema file a
    pod's owner published (written by ``Schema.to_yaml``; named by its schema name or file
    stem). Each pod's schema is its declared schema or the one inferred from its own data,
    pod by pod: rows of different pods are never put together.
    """
    if isinstance(pods, (str, Path, Pod)) or not isinstance(pods, Sequence) or not pods:
        raise PodConfigError(
            "give a non-empty list of pods (names, pod YAML files, published schema files or "
            f"fedplug.Pod objects), got {short_value(pods)}"
        )
    schemas: dict[str, Schema] = {}
    for ref in pods:
        name, schema = _published(ref, search_dirs)
        if name in schemas:
            raise PodConfigError(
                f"pod {name!r} is listed more than once (pods: {quoted([str(p) for p in pods])}); "
                "list each pod once"
            )
        schemas[name] = schema
    return schemas
