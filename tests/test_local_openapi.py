"""The local server's OpenAPI document describes exactly the routes it serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from starlette.routing import Route

import wrenn_local
from wrenn_local._routes import http_routes, utility_routes

SPEC = Path(wrenn_local.__file__).with_name("openapi.yaml")


def served() -> set[tuple[str, str]]:
    routes = [*http_routes(), *utility_routes()]
    out = {("get", "/openapi.yaml")}
    for route in routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                # a typed parameter ({id:capsule}) is documented by its name ({id})
                out.add((method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)))
    return out


def test_spec_and_routes_agree() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    documented = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert documented == served()


def test_every_ref_resolves() -> None:
    spec = yaml.safe_load(SPEC.read_text())

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: object = spec
                for part in ref.removeprefix("#/").split("/"):
                    assert isinstance(target, dict), ref
                    assert part in target, ref
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
