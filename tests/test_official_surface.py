"""Every name and parameter of the official wrenn 0.3.0 SDK exists here too.

``tests/compat/official_surface_0.3.0.json`` holds the official public API (modules,
classes, functions; parameters by name, kind and default), written by
``tests/compat/extract_surface.py`` under the official SDK. This test walks it and fails
on anything our ``wrenn`` lacks, so programs written for the official SDK keep working.
Differences we keep on purpose are listed in ``KNOWN`` with their reason (and in
``docs/migration.md``).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import attrs
import pytest

SURFACE = json.loads((Path(__file__).parent / "compat" / "official_surface_0.3.0.json").read_text())
CLASSES: dict[str, Any] = SURFACE["classes"]

# What we keep different on purpose, each with its reason (also in docs/migration.md).
# Keys: (class or function as "Class.member" / module-level name, parameter or member);
# they match wherever the official surface has that class.
KNOWN: dict[tuple[str, str], str] = {
    ("WrennClient", "http"): "no raw httpx client: the sync client runs the async core",
    ("_git", "Git"): "wrenn._git is private; the sync Git is wrenn.Git (layers)",
    ("StreamEvent", ""): "a Union of the event classes (isinstance works), not a base class",
    ("ProcessInfo()", "args"): "args defaults to [] rather than None",
    ("Result()", "extra"): "extra defaults to {} rather than None",
    ("Capsule()", "kwargs"): "no catch-all **kwargs: unknown arguments are an error",
    ("Sandbox()", "kwargs"): "no catch-all **kwargs: unknown arguments are an error",
    ("capsule", "apply_kernel_message"): "Jupyter protocol helpers of the official code",
    ("capsule", "build_execute_request"): "Jupyter protocol helpers of the official code",
    ("capsule", "build_ws_url"): "Jupyter protocol helpers of the official code",
    ("capsule", "pick_kernel_id"): "Jupyter protocol helpers of the official code",
    ("capsule", "validate_language"): "Jupyter protocol helpers of the official code",
}
# Parameters we name differently (positional use is the same): official -> ours.
RENAMED: dict[tuple[str, str], str] = {
    **{
        (f"CapsulesResource.{m}", "id"): "capsule_id"
        for m in ("get", "destroy", "pause", "resume", "ping", "metrics")
    },
    ("Commands.kill", "pid"): "selector",  # a pid or a tag
    ("Commands.connect", "pid"): "selector",
}


def _known(where: str, name: str) -> bool:
    return any(what == name and where.endswith(at) for at, what in KNOWN)


def _renamed(where: str, name: str) -> str:
    for (at, what), ours in RENAMED.items():
        if what == name and where.endswith(at):
            return ours
    return name


# Classes the SDK builds and hands out (users never call their constructors): only their
# methods and attributes are compared.
BUILT_BY_THE_SDK = {
    "AsyncCapsule",  # official: private arguments only; use create()/connect()
    "BaseAsyncCapsule",
    "AsyncGit",
    "Git",
    "AsyncPtySession",
    "PtySession",
    "Commands",
    "AsyncCommands",
    "Files",
    "AsyncFiles",
    "CapsulesResource",
    "AsyncCapsulesResource",
    "SnapshotsResource",
    "AsyncSnapshotsResource",
    "EventsResource",
    "AsyncEventsResource",
}

ANY = inspect.Parameter.empty
POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")


def _default(value: Any) -> Any:
    if value is ANY:
        return "<required>"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"<{type(value).__name__}>"


def _params(fn: Any) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("self", "cls") and not p.name.startswith("_")
    ]


def compare_params(where: str, official: list[dict[str, Any]] | None, fn: Any) -> list[str]:
    """Each official parameter exists here with a compatible kind, place and default."""
    if official is None:
        return []
    ours = _params(fn)
    by_name = {p.name: p for p in ours}
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in ours)
    has_var_pos = any(p.kind is p.VAR_POSITIONAL for p in ours)
    problems = []
    wanted = []
    for index, want in enumerate(official):
        name, kind = _renamed(where, want["name"]), want["kind"]
        wanted.append(name)
        if _known(where, want["name"]):
            continue
        if kind == "VAR_KEYWORD":
            if not has_var_kw:
                problems.append(f"{where}: no **{name}")
            continue
        if kind == "VAR_POSITIONAL":
            if not has_var_pos:
                problems.append(f"{where}: no *{name}")
            continue
        got = by_name.get(name)
        if got is None:
            if not (kind == "KEYWORD_ONLY" and has_var_kw):
                problems.append(f"{where}: lacks parameter {name!r}")
            continue
        if kind in POSITIONAL:
            if got.kind.name not in POSITIONAL or ours.index(got) != index:
                problems.append(f"{where}: {name!r} must be positional at {index}")
        elif got.kind.name not in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"):
            problems.append(f"{where}: {name!r} must be accepted by keyword")
        if want["default"] == "<required>":
            continue
        if want["default"].__class__ is str and want["default"].startswith("<"):
            if got.default is ANY:  # an object default (a factory): ours needs one too
                problems.append(f"{where}: {name!r} must be optional")
        elif _default(got.default) != want["default"]:
            problems.append(
                f"{where}: {name!r} defaults to {_default(got.default)!r},"
                f" official {want['default']!r}"
            )
    # an extra parameter of ours must not be required (official calls do not pass it)
    names = set(wanted)
    extra = [p.name for p in ours if p.name not in names and p.default is ANY]
    kinds = {p.name: p.kind.name for p in ours}
    problems.extend(
        f"{where}: extra required parameter {name!r}"
        for name in extra
        if kinds[name] in (*POSITIONAL, "KEYWORD_ONLY")
    )
    return problems


def _has_attribute(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    if attrs.has(cls) and name in attrs.fields_dict(cls):
        return True
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}) or name in getattr(klass, "__slots__", ()):
            return True
    return False


def compare_class(where: str, spec: dict[str, Any], ours: Any) -> list[str]:
    if not isinstance(ours, type):
        return [f"{where}: not a class ({ours!r})"]
    problems: list[str] = []
    if spec["kind"] == "enum":
        for member, value in spec["enum_members"].items():
            got = getattr(ours, member, None)
            if got is None:
                problems.append(f"{where}: lacks member {member!r}")
            elif got != value:
                problems.append(f"{where}.{member} == {got!r}, official {value!r}")
        return problems
    if spec["kind"] == "model":
        problems.extend(
            f"{where}: lacks field {field!r}"
            for field in spec["fields"]
            if not _has_attribute(ours, field) and not _known(where, field)
        )
    elif where.rsplit(".", 1)[1] not in BUILT_BY_THE_SDK:
        problems += compare_params(f"{where}()", spec.get("init"), ours)
    for name, member in spec.get("members", {}).items():
        at = f"{where}.{name}"
        if _known(where, name):
            continue
        kind = member["kind"]
        if name.startswith("__"):  # protocol methods: present is enough
            if getattr(ours, name, None) is None:
                problems.append(f"{at}: missing")
            continue
        if kind in ("property", "attribute"):
            if not _has_attribute(ours, name):
                problems.append(f"{at}: missing")
            continue
        static = inspect.getattr_static(ours, name, None)
        if static is None:
            problems.append(f"{at}: missing")
            continue
        if kind == "dual":
            instance = getattr(static, "instance_function", None)
            if instance is None:
                problems.append(f"{at}: not a class-or-instance method")
                continue
            problems += compare_params(f"{at}(id)", member["class_params"], getattr(ours, name))
            problems += compare_params(f"{at}()", member["instance_params"], instance)
            continue
        value = getattr(ours, name)
        if not callable(value):
            problems.append(f"{at}: not callable")
            continue
        if kind == "async method" and not inspect.iscoroutinefunction(value):
            problems.append(f"{at}: must be awaitable")
        if kind in ("classmethod", "staticmethod") and not (
            isinstance(static, classmethod | staticmethod) or inspect.ismethod(value)
        ):
            problems.append(f"{at}: must be callable on the class")
        problems += compare_params(at, member.get("params"), value)
    return problems


def compare(where: str, spec: dict[str, Any], ours: Any) -> list[str]:
    kind = spec["kind"]
    if _known(where, ""):
        return []
    if kind == "class":
        return compare_class(where, CLASSES[spec["ref"]], ours)
    if kind in ("function", "async function"):
        if not callable(ours):
            return [f"{where}: not callable"]
        return compare_params(where, spec["params"], ours)
    if kind == "value" and where.endswith("__version__"):
        return [] if tuple(map(int, ours.split(".")[:2])) >= (0, 3) else [f"{where} < 0.3"]
    return []


def _lookup(module: Any, name: str, spec: dict[str, Any]) -> tuple[Any, list[str]]:
    expected = spec.get("lazy_warning")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(module, name, None)
    if value is None:
        return None, [f"{module.__name__}.{name}: missing"]
    problems = []
    if expected is not None and not any(w.category.__name__ == expected for w in caught):
        problems.append(f"{module.__name__}.{name}: no {expected}")
    return value, problems


@pytest.mark.parametrize("modname", sorted(SURFACE["modules"]))
def test_official_module_surface(modname: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = importlib.import_module(modname)
    problems: list[str] = []
    for name, spec in SURFACE["modules"][modname].items():
        if _known(modname, name):
            continue
        value, found = _lookup(module, name, spec)
        problems += found
        if value is not None:
            problems += compare(f"{modname}.{name}", spec, value)
    assert problems == [], "\n".join(problems)


def test_known_differences_are_documented() -> None:
    migration = (Path(__file__).parents[1] / "docs" / "migration.md").read_text()
    for where, name in KNOWN:
        assert (name or where) in migration, (where, name)
    for (where, name), ours in RENAMED.items():
        assert f"`{ours}`" in migration, (where, name)


def test_the_surface_file_is_the_official_one() -> None:
    assert SURFACE["version"] == "0.3.0"
