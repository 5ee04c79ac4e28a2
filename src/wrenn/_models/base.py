"""The official SDK's pydantic-style helpers on our attrs models (no pydantic needed).

``model_dump()``, ``model_dump_json()``, ``model_validate()`` and
``model_validate_json()`` work as code written for the official SDK expects. Conversion
goes through the SDK's one converter, which registers itself here when it is imported
(the models cannot import it: it sits above them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Self

import attrs

__all__ = ["WireModel", "register_codec"]

_codec: dict[str, Callable[..., Any]] = {}


def register_codec(
    structure: Callable[[Any, type], Any], unstructure: Callable[[Any], Any]
) -> None:
    """Called once by the converter module."""
    _codec["structure"] = structure
    _codec["unstructure"] = unstructure


def _codec_fn(name: str) -> Callable[..., Any]:
    # importing any part of ``wrenn`` runs the package, which imports the converter
    return _codec[name]


class WireModel:
    """Base of the wire models: pydantic-compatible conversion helpers."""

    __slots__ = ()

    def model_dump(
        self, *, mode: str = "python", exclude_none: bool = False, **_: Any
    ) -> dict[str, Any]:
        """The model as a dict. ``mode="json"`` gives JSON-ready values in wire form;
        the default keeps Python values (datetimes, enums, nested dicts)."""
        if mode == "json":
            data: dict[str, Any] = _codec_fn("unstructure")(self)
        else:
            data = attrs.asdict(self, recurse=True)  # type: ignore[arg-type]
        if exclude_none:
            data = {k: v for k, v in data.items() if v is not None}
        return data

    def model_dump_json(self, *, indent: int | None = None, **kwargs: Any) -> str:
        return json.dumps(self.model_dump(mode="json", **kwargs), indent=indent)

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
