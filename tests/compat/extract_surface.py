"""Write the official wrenn 0.3.0 public API as JSON: names, parameters, kinds, defaults.

Run it with the official SDK installed (it is also called ``wrenn``, so in a virtual
environment of its own)::

    /path/to/official-venv/bin/python tests/compat/extract_surface.py

It writes ``tests/compat/official_surface_0.3.0.json`` next to itself. Only names and
signatures are recorded (no code); ``tests/test_official_surface.py`` compares our live
objects against that file, without the network.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

MODULES = [
    "wrenn",
    "wrenn.client",
    "wrenn.capsule",
    "wrenn.async_capsule",
    "wrenn.commands",
    "wrenn.files",
    "wrenn.pty",
    "wrenn.sandbox",
    "wrenn.exceptions",
    "wrenn.models",
    "wrenn.code_runner",
    "wrenn.code_runner.capsule",
    "wrenn.code_runner.async_capsule",
    "wrenn.code_runner.models",
    "wrenn.code_interpreter",
    "wrenn._git",
]
# names reached through a module __getattr__ (deprecated aliases)
LAZY = {
    "wrenn": ["Sandbox", "WrennHostHasSandboxesError"],
    "wrenn.sandbox": ["Sandbox"],
    "wrenn.exceptions": [
        "WrennHostHasSandboxesError",
        "GitError",
        "GitCommandError",
        "GitAuthError",
    ],
    "wrenn.code_runner": ["Sandbox"],
}
# what official code calls on the pydantic models
PYDANTIC_METHODS = ["model_dump", "model_dump_json", "model_validate", "model_validate_json"]
DUNDERS = ["__enter__", "__exit__", "__aenter__", "__aexit__", "__iter__", "__aiter__"]
SKIP_BASES = (object, BaseException, str, int, enum.Enum)


def default_repr(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return "<required>"
    if value is None or isinstance(value, bool | int | float | str):
        return value if not isinstance(value, enum.Enum) else str(value.value)
    return f"<{type(value).__name__}>"


def signature(obj: Any) -> list[dict[str, Any]] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [
        {"name": p.name, "kind": p.kind.name, "default": default_repr(p.default)}
        for p in sig.parameters.values()
        if p.name not in ("self", "cls") and not p.name.startswith("_")
    ]


def is_pydantic(cls: type) -> bool:
    return any(b.__name__ == "BaseModel" for b in cls.__mro__[1:])


def member_kind(cls: type, name: str) -> tuple[str, Any]:
    static = inspect.getattr_static(cls, name)
    if isinstance(static, property):
        return "property", None
    if isinstance(static, classmethod):
        return "classmethod", getattr(cls, name)
    if isinstance(static, staticmethod):
        return "staticmethod", getattr(cls, name)
    if type(static).__name__ == "_DualMethod":
        return "dual", None
    if inspect.isfunction(static):
        return ("async method" if inspect.iscoroutinefunction(static) else "method"), static
    return "attribute", None


def describe_class(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "class", "bases": [b.__name__ for b in cls.__mro__[1:]]}
    members: dict[str, Any] = {}
    if issubclass(cls, enum.Enum):
        out["enum_members"] = {m.name: m.value for m in cls}  # type: ignore[var-annotated]
        out["kind"] = "enum"
        return out
    if is_pydantic(cls):
        out["kind"] = "model"
        out["fields"] = {
            name: {"required": field.is_required()}
            for name, field in cls.model_fields.items()  # type: ignore[attr-defined]
        }
        for name in PYDANTIC_METHODS:
            members[name] = {
                "kind": "classmethod" if name.startswith("model_validate") else "method"
            }
    else:
        out["init"] = signature(cls)
    for klass in cls.__mro__:
        if klass in SKIP_BASES or klass.__module__ in ("builtins", "pydantic.main"):
            continue
        if klass.__module__.startswith("pydantic") or klass.__module__ == "enum":
            continue
        for name in vars(klass):
            if name in members or (name.startswith("_") and name not in DUNDERS):
                continue
            if is_pydantic(cls) and name.startswith("model_"):
                continue
            kind, fn = member_kind(cls, name)
            entry: dict[str, Any] = {"kind": kind}
            if kind == "dual":
                static = inspect.getattr_static(cls, name)
                entry["class_params"] = signature(getattr(cls, static._sfn))
                entry["instance_params"] = signature(getattr(cls, static._ifn))
                entry["async"] = inspect.iscoroutinefunction(getattr(cls, static._ifn))
            elif fn is not None:
                entry["params"] = signature(fn)
                if kind.startswith(("class", "static")):
                    entry["async"] = inspect.iscoroutinefunction(fn)
            members[name] = entry
    if "__slots__" in vars(cls) and not is_pydantic(cls):
        for name in vars(cls)["__slots__"]:
            if not name.startswith("_"):
                members.setdefault(name, {"kind": "attribute"})
    if "__dataclass_fields__" in vars(cls):
        for name in cls.__dataclass_fields__:  # type: ignore[attr-defined]
            members.setdefault(name, {"kind": "attribute"})
    out["members"] = dict(sorted(members.items()))
    return out


CLASSES: dict[str, Any] = {}


def describe(obj: Any) -> dict[str, Any]:
    if isinstance(obj, type):
        origin = f"{obj.__module__}.{obj.__qualname__}"
        if origin not in CLASSES:
            CLASSES[origin] = {}  # reserved: a class met again while being described
            CLASSES[origin] = describe_class(obj)
        return {"kind": "class", "ref": origin}
    if inspect.isfunction(obj):
        return {
            "kind": "async function" if inspect.iscoroutinefunction(obj) else "function",
            "params": signature(obj),
        }
    if isinstance(obj, types.ModuleType):
        return {"kind": "module"}
    return {"kind": "value", "value": default_repr(obj)}


def public_names(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, types.ModuleType):
            if value.__name__.startswith(module.__name__ + "."):
                names.append(name)
            continue
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and origin.startswith("wrenn"):
            names.append(name)
    return sorted(names)


def first_warning(modname: str, name: str) -> str | None:
    """The warning category of the first access, in a fresh interpreter (the official
    aliases cache themselves after the first access)."""
    probe = (
        "import importlib, warnings\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module({modname!r})\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    getattr(m, {name!r})\n"
        "print(caught[-1].category.__name__ if caught else '')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip() or None


def main() -> int:
    import wrenn

    surface: dict[str, Any] = {"version": wrenn.__version__, "modules": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for modname in MODULES:
            module = importlib.import_module(modname)
            entries = {name: describe(getattr(module, name)) for name in public_names(module)}
            for name in LAZY.get(modname, []):
                value = getattr(module, name)
                entry = describe(value)
                entry["lazy_warning"] = first_warning(modname, name)
                entry["alias_of"] = value.__name__
                entries[name] = entry
            surface["modules"][modname] = dict(sorted(entries.items()))
    surface["classes"] = dict(sorted(CLASSES.items()))
    target = Path(__file__).with_name(f"official_surface_{wrenn.__version__}.json")
    target.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
