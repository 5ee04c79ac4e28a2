"""The SDK's folders are its layers: a module imports only its own layer or below, and
no two modules import each other, directly or around a circle.

The table is the map a newcomer reads in docs/design/architecture.md; a new module must
be placed in it (the test says so) before it can land.
"""

from __future__ import annotations

import ast

from tests.layering import SRC, cycles, import_graph, layer_of, upward_imports

# lowest first; a module may import from its own layer and from every layer before it
LAYERS: list[tuple[str, list[str]]] = [
    (
        "ground",
        [
            "wrenn._version",
            "wrenn._exceptions",
            "wrenn._config",
            "wrenn._concurrency",
            "wrenn._owner",
            "wrenn._text",
        ],
    ),
    ("models", ["wrenn._models", "wrenn._models.*"]),
    ("protocol", ["wrenn._protocol", "wrenn._protocol.*"]),
    ("transport", ["wrenn._transport", "wrenn._transport.*"]),
    ("resources", ["wrenn._resources", "wrenn._resources.*"]),
    ("session", ["wrenn._session"]),
    (
        "async API",
        [
            "wrenn._wait",
            "wrenn._commands",
            "wrenn._files",
            "wrenn._pty",
            "wrenn._git",
            "wrenn._code",
            "wrenn._capsule",
            "wrenn._fanout",
            "wrenn._pool",
            "wrenn._client",
        ],
    ),
    ("sync facade", ["wrenn._sync", "wrenn._sync.*"]),
    ("command line", ["wrenn._cli", "wrenn._cli.*"]),
    ("public surface", ["wrenn", "wrenn.*"]),
]

# Foreign libraries that only one folder may touch.
CONFINED = {
    "httpx2": "wrenn._transport",
    "httpcore2": "wrenn._transport",
    "wsproto": "wrenn._transport",
    "rich": "wrenn._cli.output",
}


def test_every_module_has_a_layer() -> None:
    graph = import_graph("wrenn")
    for module in graph:
        layer_of(module, LAYERS)  # raises, naming the module, if it has none


def test_no_import_circles_in_the_sdk() -> None:
    assert cycles(import_graph("wrenn")) == []


def test_modules_import_only_their_own_layer_or_below() -> None:
    assert upward_imports(import_graph("wrenn"), LAYERS) == []


def test_foreign_libraries_stay_in_their_folder() -> None:
    bad = []
    for path in sorted((SRC / "wrenn").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                home = CONFINED.get(name.split(".")[0])
                if home and module != home and not module.startswith(home + "."):
                    bad.append(f"{module}:{node.lineno} imports {name} (only {home} may)")
    assert bad == []


def test_the_architecture_page_names_every_module() -> None:
    page = (SRC.parent / "docs" / "design" / "architecture.md").read_text()
    missing = [
        str(path.relative_to(SRC))
        for path in sorted((SRC / "wrenn").rglob("*.py"))
        if f"`{path.relative_to(SRC)}`" not in page
    ]
    assert missing == [], "add a line for each to docs/design/architecture.md"
