"""The one private cattrs converter, and the seam that turns its failures into ours.

* Unknown JSON fields are ignored; ``null`` where a field has a default means "use the
  default", so an odd server cannot fail a whole response over one missing value.
* Datetimes are RFC 3339 (a naive timestamp is taken as UTC); dates are ISO dates;
  ``bytes`` travel as standard base64 (never cattrs' base85).
* Wire names that are awkward in Python are renamed here and only here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .._exceptions import WrennProtocolError
from .._models import (
    BackgroundProcess,
    CapsuleMetrics,
    CapsuleUsage,
    Event,
    HostDeletePreview,
)
from .._models.base import register_codec

__all__ = ["converter", "structure", "structure_list", "unstructure"]

T = TypeVar("T")

# Python attribute -> wire key, per class.
_RENAMES: Final[Mapping[type, Mapping[str, str]]] = {
    CapsuleMetrics: {"capsule_id": "sandbox_id"},
    CapsuleUsage: {"from_": "from"},
    Event: {"capsule": "sandbox"},
    HostDeletePreview: {"capsule_ids": "sandbox_ids"},
    BackgroundProcess: {"capsule_id": "sandbox_id"},
}


def _parse_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    elif isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an RFC 3339 timestamp, got {type(value).__name__}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _parse_date(value: Any, _: type) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    raise TypeError(f"expected an ISO date, got {type(value).__name__}")


def _parse_bytes(value: Any, _: type) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError("invalid base64") from exc
    raise TypeError(f"expected base64 text, got {type(value).__name__}")


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(dt.datetime, _parse_datetime)
    conv.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    conv.register_structure_hook(dt.date, _parse_date)
    conv.register_unstructure_hook(dt.date, lambda v: v.isoformat())
    conv.register_structure_hook(bytes, _parse_bytes)
    conv.register_unstructure_hook(bytes, lambda v: base64.b64encode(v).decode("ascii"))

    def structure_factory(cls: type[Any]) -> Callable[[Any, type[Any]], Any]:
        renames = _RENAMES.get(cls, {})
        overrides = {name: override(rename=wire) for name, wire in renames.items()}
        inner = make_dict_structure_fn(cls, conv, **overrides)  # type: ignore[arg-type]
        # Fields that may be dropped when the wire says null: those with a default whose
        # type does not admit None. Their default then applies.
        droppable = frozenset(
            renames.get(a.name, a.name)
            for a in attrs.fields(cls)
            if a.default is not attrs.NOTHING and not _admits_none(a.type)
        )

        def structure_one(value: Any, target: type[Any]) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a JSON object for {cls.__name__}")
            if droppable:
                value = {k: v for k, v in value.items() if v is not None or k not in droppable}
            for name, wire in renames.items():
                if wire not in value and name in value:  # a model_dump() keyed by field name
                    value = {**value, wire: value[name]}
            return inner(value, target)

        return structure_one

    def unstructure_factory(cls: type[Any]) -> Callable[[Any], Any]:
        renames = _RENAMES.get(cls, {})
        overrides = {name: override(rename=wire) for name, wire in renames.items()}
        return make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    return conv


def _admits_none(tp: Any) -> bool:
    import types
    import typing

    if tp is None or tp is type(None):
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(tp)
    return False


converter: Final = _make_converter()


def structure(data: Any, cls: type[T], *, what: str = "") -> T:
    """Structure wire JSON into ``cls``; any failure becomes :class:`WrennProtocolError`."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises groups, KeyError, TypeError, ValueError, ...
        label = what or cls.__name__
        raise WrennProtocolError(f"unexpected shape of {label} in the server's answer") from exc


def structure_list(data: Any, cls: type[T], *, what: str = "") -> list[T]:
    """Structure a JSON array of ``cls``."""
    if not isinstance(data, list):
        raise WrennProtocolError(f"expected a JSON array of {what or cls.__name__}")
    return [structure(item, cls, what=what) for item in data]


def unstructure(obj: Any) -> Any:
    """Unstructure a model to wire JSON (used by tests and by request bodies)."""
    return converter.unstructure(obj)


# the models' model_validate()/model_dump(); model_dump() keys the models of the official
# SDK by its field names (the wire names), ours by their own
register_codec(
    structure, unstructure, {cls: _RENAMES[cls] for cls in (CapsuleMetrics, CapsuleUsage, Event)}
)
