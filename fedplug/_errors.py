"""Exceptions raised by fedplug.

Every error fedplug raises on purpose derives from :class:`FedplugError` and carries a
message that names the thing at fault and how to fix it, so front ends can print it
without a traceback. The hierarchy:

* FedplugError - base class of every error fedplug raises on purpose.
  * ConfigError - a configuration (Hydra, YAML, keyword arguments) is invalid.
    * PodConfigError - a pod file or pod definition is invalid, or a pod is not found.
    * DataStructureError - a datastructure does not fit the schema it is applied to.
  * SchemaError - a schema is malformed, or the schemas of several pods do not agree.
  * DataSourceError - a datasource cannot be read.
  * DataValidationError - a frame does not conform to its schema (every violation).
  * PluginError - a plugin is unknown, ambiguous or incompatible.
  * PolicyRefusal - a pod refused a task because of its owner's policy.
  * SecureAggregationError - the secure aggregation protocol cannot proceed.
    * EncodingError - a pod's values do not fit the fixed-point encoding.
  * TrainingError - a federated run (or a pod's local training) failed.
    * ModelMismatchError - weights do not fit the model's architecture (also a
      ModelFileError).
  * NotFittedError - predict, evaluate or serialize before fit() or deserialize().
  * ModelFileError - a file is missing or not a fedplug model file.
    * ModelMismatchError - (see above) a model's weights do not fit its architecture.
"""

from __future__ import annotations

from collections.abc import Iterable


class FedplugError(Exception):
    """Base class of every error fedplug raises on purpose."""


class ConfigError(FedplugError):
    """A configuration (Hydra, YAML, keyword arguments) is invalid."""


class SchemaError(FedplugError):
    """A schema is malformed, or schemas of several pods do not agree."""


class DataSourceError(FedplugError):
    """A datasource cannot be read."""


class DataValidationError(FedplugError):
    """A frame does not conform to its schema; lists every violation at once."""

    def __init__(
        self,
        message: str,
        violations: Iterable[object] = (),
        pod: str | None = None,
        columns: Iterable[str] = (),
    ):
        super().__init__(message)
        self.violations = list(violations)
        self.pod = pod
        #: The schema's own columns that have violations: names a pod may publish, unlike
        #: the message, which quotes offending values.
        self.columns = sorted(set(columns))


class PodConfigError(ConfigError):
    """A pod file or pod definition is invalid, or a pod cannot be found."""


class DataStructureError(ConfigError):
    """A datastructure does not fit the schema it is applied to."""


class PluginError(FedplugError):
    """A plugin is unknown, ambiguous or incompatible."""


class PolicyRefusal(FedplugError):
    """A pod refused a task because of its owner's policy."""

    def __init__(self, message: str, reason: str = "", pods: Iterable[str] = ()):
        super().__init__(message)
        self.reason = reason
        self.pods = list(pods)


class SecureAggregationError(FedplugError):
    """The secure aggregation protocol cannot proceed (too few pods, bad keys, ...)."""


class EncodingError(SecureAggregationError):
    """A pod's values do not fit the fixed-point encoding (weight, non-finite values).

    Its message may quote figures computed from the pod's data: a pod logs it, it never
    sends it.
    """


class TrainingError(FedplugError):
    """A federated run failed; the message says which pods failed and why."""


class NotFittedError(FedplugError):
    """A model is used (predict, evaluate, serialize) before fit() or deserialize()."""


class ModelFileError(FedplugError):
    """A model file does not exist, or is not a fedplug model file."""


class ModelMismatchError(ModelFileError, TrainingError):
    """Weights do not fit the model's architecture (layer count or a layer's shape).

    A :class:`TrainingError` too, which is what a mismatch raised before this class existed.
    """
