"""wrenn_local's layers: no import circles, and every module imports only its own layer
or the layers below it (the table below, lowest first)."""

from __future__ import annotations

import ast
import sys

from tests.layering import SRC, cycles, import_graph, layer_of, upward_imports

PACKAGE = "wrenn_local"

LAYERS: list[tuple[str, list[str]]] = [
    # errors, IDs, options, metric rings, the host's memory and process tree, the ASGI
    # serving helper, the server as a process
    (
        "ground",
        [
            "wrenn_local._errors",
            "wrenn_local._ids",
            "wrenn_local._options",
            "wrenn_local._metrics",
            "wrenn_local._host_memory",
            "wrenn_local._proc",
            "wrenn_local._asgi",
            "wrenn_local._process",
            "wrenn_local._unix_stream",
            "wrenn_local._forker",
        ],
    ),
    # stdlib-only programs run inside a capsule by path (see also the test below)
    ("inside the capsule", ["wrenn_local._inside", "wrenn_local._inside.*"]),
    # talking to a capsule's agent, and making the sandbox that runs it
    (
        "agent client and sandbox",
        [
            "wrenn_local._agent_client",
            "wrenn_local._code_runner",
            "wrenn_local._cgroups",
            "wrenn_local._seccomp",
            "wrenn_local._userns",
            "wrenn_local._network",
            "wrenn_local._isolation",
            "wrenn_local._disk",
            "wrenn_local._leftovers",
            "wrenn_local._data_dir",
            "wrenn_local._rootfs",
            "wrenn_local._shared_base",
            "wrenn_local._boot_process",
            "wrenn_local._ready_networks",
            "wrenn_local._sandbox",
        ],
    ),
    # what the API is about: accounts, events, hosts, templates, capsules and their upkeep
    (
        "domain",
        [
            "wrenn_local._accounts",
            "wrenn_local._port_links",
            "wrenn_local._events",
            "wrenn_local._hosts",
            "wrenn_local._templates",
            "wrenn_local._spares",
            "wrenn_local._capsules",
            "wrenn_local._persist",
            "wrenn_local._upkeep",
        ],
    ),
    # the wire: HTTP and WebSocket routes, and the capsule port proxy
    (
        "routes",
        [
            "wrenn_local._routes",
            "wrenn_local._routes.*",
            "wrenn_local._proxy",
            "wrenn_local._guard",
        ],
    ),
    ("app and server", ["wrenn_local._app", "wrenn_local._server"]),
    ("public package and CLI", ["wrenn_local", "wrenn_local._cli", "wrenn_local.__main__"]),
]


def test_no_import_circles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_every_module_has_a_layer() -> None:
    for module in import_graph(PACKAGE):
        layer_of(module, LAYERS)  # raises for a module missing from the table


def test_imports_only_go_down() -> None:
    assert upward_imports(import_graph(PACKAGE), LAYERS) == []


def test_route_modules_share_only_the_plumbing() -> None:
    """A route module imports no other section's module, only ``_http`` and ``_ws``."""
    graph = import_graph(PACKAGE)
    plumbing = {"wrenn_local._routes._http", "wrenn_local._routes._ws"}
    bad = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module.startswith("wrenn_local._routes.")
        for target in sorted(targets)
        if target.startswith("wrenn_local._routes") and target not in plumbing
    ]
    assert bad == []


def test_programs_inside_the_capsule_use_only_the_standard_library() -> None:
    """They run under the capsule's own Python, where nothing else is installed."""
    bad = []
    for path in sorted((SRC / PACKAGE / "_inside").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." if node.level else node.module or ""]
            else:
                continue
            bad += [
                f"{path.name} imports {name}"
                for name in names
                if name.split(".")[0] not in sys.stdlib_module_names
            ]
    assert bad == []


def test_only_the_agent_client_builds_agent_requests() -> None:
    """Agent request frames (``{"op": ...}``) are built in ``_agent_client.py`` only."""
    builders = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted((SRC / PACKAGE).rglob("*.py"))
        if path.name != "_agent_client.py" and path.parent.name != "_inside"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Dict)
        and any(isinstance(key, ast.Constant) and key.value == "op" for key in node.keys)
    ]
    assert builders == []
