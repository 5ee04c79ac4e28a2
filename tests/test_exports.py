"""The public surface: what ``import wrenn`` offers, and where it says it lives."""

from __future__ import annotations

import inspect

import wrenn
from wrenn import exceptions, models


def test_all_names_exist_and_are_unique() -> None:
    for module in (wrenn, exceptions, models):
        assert len(module.__all__) == len(set(module.__all__)), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_classes_name_a_public_module() -> None:
    for module in (wrenn, exceptions, models):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                assert not any(part.startswith("_") for part in obj.__module__.split(".")), (
                    f"{name} claims to live in {obj.__module__}"
                )


def test_every_public_callable_has_a_docstring() -> None:
    missing = []
    for name in ("AsyncWrennClient",):
        cls = getattr(wrenn, name)
        for attr, value in vars(cls).items():
            if attr.startswith("_") or not callable(value):
                continue
            if not inspect.getdoc(value):
                missing.append(f"{name}.{attr}")
    client = wrenn.AsyncWrennClient(api_key="wrn_x", base_url="http://127.0.0.1:1")
    for resource in (
        "capsules",
        "snapshots",
        "processes",
        "files",
        "events",
        "auth",
        "api_keys",
        "hosts",
    ):
        obj = getattr(client, resource)
        assert inspect.getdoc(type(obj)), resource
    assert missing == []


def test_public_annotations_resolve_under_the_public_module() -> None:
    import typing

    for name in models.__all__:
        obj = getattr(models, name)
        if inspect.isclass(obj) and hasattr(obj, "__attrs_attrs__"):
            typing.get_type_hints(obj)  # raises NameError if a name does not resolve
