"""Architecture rules that a reviewer should not have to check by hand."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def _imports(package: str) -> list[tuple[Path, int, str]]:
    found = []
    for path in sorted((SRC / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path, node.lineno, node.module))
    return found


def test_sdk_imports_neither_asyncio_nor_trio() -> None:
    bad = [
        f"{p.relative_to(SRC)}:{line} imports {mod}"
        for p, line, mod in _imports("wrenn")
        if mod.split(".")[0] in {"asyncio", "trio", "sniffio"}
    ]
    assert bad == [], "src/wrenn must use anyio only:\n" + "\n".join(bad)


def test_local_server_does_not_import_the_sdk() -> None:
    bad = [
        f"{p.relative_to(SRC)}:{line} imports {mod}"
        for p, line, mod in _imports("wrenn_local")
        if mod.split(".")[0] == "wrenn"
    ]
    assert bad == [], "wrenn_local must stay independent of the SDK:\n" + "\n".join(bad)


def test_importing_wrenn_loads_no_trio_and_no_server() -> None:
    code = (
        "import sys, wrenn; "
        "bad = [m for m in ('trio', 'wrenn_local', 'starlette', 'hypercorn') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_sdk_uses_only_the_public_entry_points_of_the_local_server() -> None:
    bad = [
        f"{p.relative_to(SRC)}:{line} imports {mod}"
        for p, line, mod in _imports("wrenn")
        if mod.startswith("wrenn_local.")
    ]
    assert bad == [], (
        "use wrenn_local's public names (serve, server_process, main, add_serve_arguments)"
    )
