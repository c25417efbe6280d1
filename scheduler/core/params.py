"""DAG params: defaults a run's conf may override, checked against JSON-schema-like types."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.core.taskgraph import user_location
from scheduler.errors import DagDefinitionError, ParamValidationError

_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_TYPE_ALIASES: dict[Any, str] = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
    "dict": "object", "none": "null", str: "string", int: "integer", float: "number",
    bool: "boolean", list: "array", tuple: "array", dict: "object", type(None): "null",
}
_SPEC_KEYS = frozenset({"default", "type", "description", "enum", "minimum", "maximum"})


def _one_type(t: Any) -> str:
    key = t.lower() if isinstance(t, str) else t
    name = _TYPE_ALIASES.get(key, key)
    if name not in _JSON_TYPES:
        loc = user_location()
        raise DagDefinitionError(
            f"unknown Param type {t!r}", fileloc=loc[0], lineno=loc[1],
            hint="use one of " + ", ".join(_JSON_TYPES) + " (or a list of them)",
        )
    return name


def infer_param_type(value: Any) -> str | None:
    """The JSON-schema type name of a plain value; None for None or an unknown kind."""
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list | tuple, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return None


def _matches(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list | tuple)
    return isinstance(value, dict)


class Param:
    """A DAG parameter: a default a run's conf may override, with a type to check it against.

    ``type`` is a JSON-schema type name (``string integer number boolean array object null``),
    a Python type (``int`` ...), or a list of them; None accepts anything.
    """

    def __init__(
        self,
        default: Any = None,
        type: Any = None,  # noqa: A002 - Airflow's name
        description: str | None = None,
        enum: Iterable[Any] | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> None:
        self.default = default
        if type is None or isinstance(type, str) or not isinstance(type, list | tuple):
            self.type: str | list[str] | None = None if type is None else _one_type(type)
        else:
            self.type = [_one_type(t) for t in type]
        self.description = description
        self.enum = list(enum) if enum is not None else None
        self.minimum = minimum
        self.maximum = maximum

    @property
    def value(self) -> Any:
        """The default (Airflow's name for a param's value before a run's conf applies)."""
        return self.default

    def _types(self) -> list[str]:
        return [] if self.type is None else [self.type] if isinstance(self.type, str) else self.type

    def validate(self, value: Any, name: str) -> Any:
        """Return ``value`` if it satisfies this param, else raise ParamValidationError.

        None is accepted only when the type allows it (no type, or ``"null"`` among them).
        """
        types = self._types()
        fix = f"; set {name!r} in the run's conf (--conf JSON) to a valid value"
        if value is None and types and "null" not in types:
            raise ParamValidationError(
                f"param {name!r} is required: it has no default and the conf does not set it{fix}")
        if value is None:
            return value
        if types and not any(_matches(value, t) for t in types):
            want = " or ".join(types)
            raise ParamValidationError(
                f"param {name!r} must be of type {want}, got {value!r} "
                f"({type(value).__name__}){fix}")
        if self.enum is not None and value not in self.enum:
            raise ParamValidationError(
                f"param {name!r} must be one of {self.enum!r}, got {value!r}{fix}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ParamValidationError(
                    f"param {name!r} must be >= {self.minimum}, got {value!r}{fix}")
            if self.maximum is not None and value > self.maximum:
                raise ParamValidationError(
                    f"param {name!r} must be <= {self.maximum}, got {value!r}{fix}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The serialized form: default, type, description, and enum/minimum/maximum if set."""
        d: dict[str, Any] = {"default": self.default, "type": self.type,
                             "description": self.description}
        for key in ("enum", "minimum", "maximum"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Param:
        return cls(**{k: v for k, v in d.items() if k in _SPEC_KEYS})

    def __repr__(self) -> str:
        return f"Param({self.default!r}, type={self.type!r})"


def _as_param(value: Any) -> Param:
    if isinstance(value, Param):
        return value
    if isinstance(value, Mapping) and "default" in value and set(value) <= _SPEC_KEYS:
        return Param.from_dict(value)
    return Param(value, type=infer_param_type(value))


def resolve_params(dag_params: Mapping[str, Any], conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's params: ``conf`` values over the defaults, each checked against its Param.

    ``dag_params`` values may be :class:`Param` objects (``DAG.params``), serialized specs
    (``{"default": ..., "type": ...}``) or plain values (type inferred). Conf keys the DAG
    does not declare are passed through unchecked. Raises ParamValidationError naming every
    invalid param. Defaults are deep-copied, so a run cannot change another run's.
    """
    rest = dict(conf or {})
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, spec in dag_params.items():
        param = _as_param(spec)
        value = rest.pop(name) if name in rest else copy.deepcopy(param.default)
        try:
            out[name] = param.validate(value, name)
        except ParamValidationError as exc:
            errors.append(str(exc))
    if errors:
        raise ParamValidationError("; ".join(errors))
    out.update(rest)
    return out
