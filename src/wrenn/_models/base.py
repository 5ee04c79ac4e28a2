"""The official SDK's pydantic-style helpers on our attrs models (no pydantic needed).

``model_dump()``, ``model_dump_json()``, ``model_validate()`` and
``model_validate_json()`` work as code written for the official SDK expects. Conversion
goes through the SDK's one converter, which registers itself here when it is imported
(the models cannot import it: it sits above them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import importlib
import json
import keyword
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self, TypeVar, cast

import attrs

__all__ = ["DataclassShaped", "WireModel", "dataclass_view", "register_codec"]

C = TypeVar("C", bound=type)

_codec: dict[str, Callable[..., Any]] = {}


_wire_names: dict[type, Mapping[str, str]] = {}


def register_codec(
    structure: Callable[[Any, type], Any],
    unstructure: Callable[[Any], Any],
    wire_names: Mapping[type, Mapping[str, str]] | None = None,
) -> None:
    """Called once by the converter module (``wire_names``: per model of the official
    SDK, the fields whose wire name, its field name there, differs from ours)."""
    _codec["structure"] = structure
    _codec["unstructure"] = unstructure
    _wire_names.update(wire_names or {})


def _key(cls: type, name: str, by_alias: bool) -> str:
    """A field's key in ``model_dump``: the official SDK's field name (the wire name,
    unless that is a Python keyword: ``from_``), or with ``by_alias`` the wire name."""
    wire = _wire_names.get(cls, {}).get(name, name)
    if by_alias or not keyword.iskeyword(wire):
        return wire
    return name


def _dump(value: Any, as_json: bool, by_alias: bool, exclude_none: bool) -> Any:
    if isinstance(value, WireModel) and attrs.has(type(value)):
        cls = type(value)
        out: dict[str, Any] = {}
        for field in attrs.fields(cast("Any", cls)):
            item = getattr(value, field.name)
            if item is None and exclude_none:
                continue
            out[_key(cls, field.name, by_alias)] = _dump(item, as_json, by_alias, exclude_none)
        return out
    if attrs.has(type(value)):
        return {
            k: _dump(v, as_json, by_alias, exclude_none)
            for k, v in attrs.asdict(value, recurse=False).items()
            if not (v is None and exclude_none)
        }
    if isinstance(value, Mapping):
        return {
            k: _dump(v, as_json, by_alias, exclude_none)
            for k, v in value.items()
            if not (v is None and exclude_none)
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_dump(v, as_json, by_alias, exclude_none) for v in value]
    if not as_json:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def _codec_fn(name: str) -> Callable[..., Any]:
    if name not in _codec:
        # ``from wrenn.models import Capsule`` alone does not import the converter (the
        # package imports its parts lazily): load it now, it registers itself
        importlib.import_module("wrenn._resources.converter")
    return _codec[name]


class WireModel:
    """Base of the wire models: pydantic-compatible conversion helpers."""

    __slots__ = ()

    def model_dump(
        self,
        *,
        mode: str = "python",
        by_alias: bool | None = None,
        exclude_none: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        """The model as a dict, keyed as the official SDK's pydantic models are: by field
        name (``CapsuleMetrics.sandbox_id``, ``SSEEvent.sandbox``, ``UsageResponse.from_``),
        by wire name with ``by_alias=True`` (``from``). ``mode="json"`` gives JSON values
        (enums as their strings, datetimes in ISO 8601); the default keeps Python values.
        ``exclude_none`` drops ``None`` values at every level."""
        data: dict[str, Any] = _dump(self, mode == "json", bool(by_alias), exclude_none)
        return data

    def model_dump_json(self, *, indent: int | None = None, **kwargs: Any) -> str:
        """The model as JSON text (compact, as pydantic writes it, unless ``indent``)."""
        data = self.model_dump(mode="json", **kwargs)
        if indent is None:
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return json.dumps(data, indent=indent, ensure_ascii=False)

    @classmethod
    def model_validate(cls, obj: Any, **_: Any) -> Self:
        """Build the model from a dict (wire form) or return a model as it is."""
        if isinstance(obj, cls):
            return obj
        result: Self = _codec_fn("structure")(obj, cls)
        return result

    @classmethod
    def model_validate_json(cls, data: str | bytes, **kwargs: Any) -> Self:
        return cls.model_validate(json.loads(data), **kwargs)


class DataclassShaped:
    """Base of the classes :func:`dataclass_view` decorates: tells type checkers they
    are dataclass instances (``dataclasses.asdict(result)`` type-checks, as it did with
    the official SDK)."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


def dataclass_view(*names: str, types: Mapping[str, Any] | None = None) -> Callable[[C], C]:
    """Class decorator: the class also reads as the official SDK's ``@dataclass`` of the
    same name, so ``dataclasses.asdict(result)``, ``fields()``, ``astuple()``,
    ``replace()`` and ``is_dataclass()`` work on it as they did there.

    ``names`` are the official fields, in the official order (default: the class's
    public attrs fields); fields of ours beyond them (``CommandResult.stdout_bytes``)
    stay out of the view, as they are out of the official class. ``types`` gives the
    types of a class that is not an attrs class (its fields are then required).
    """

    def apply(cls: C) -> C:
        spec: list[tuple[str, Any, Any]] = []
        if attrs.has(cls):
            attrs.resolve_types(cls)
            by_name = attrs.fields_dict(cls)
            wanted = names or tuple(n for n, a in by_name.items() if not n.startswith("_"))
            for name in wanted:
                field = by_name[name]
                default: Any = field.default
                if default is attrs.NOTHING:
                    spec.append((name, field.type, dataclasses.field()))
                elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    factory = dataclasses.field(default_factory=default.factory)
                    spec.append((name, field.type, factory))
                else:
                    spec.append((name, field.type, dataclasses.field(default=default)))
        else:
            spec = [(name, (types or {})[name], dataclasses.field()) for name in names]
        shadow = dataclasses.make_dataclass(cls.__name__, spec)
        # what dataclasses.fields()/asdict()/replace() read; attrs' own machinery is
        # untouched
        cls.__dataclass_fields__ = shadow.__dataclass_fields__  # type: ignore[attr-defined]
        cls.__dataclass_params__ = shadow.__dataclass_params__  # type: ignore[attr-defined]
        return cls

    return apply
