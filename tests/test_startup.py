"""Start-up: what ``import wrenn``, the pytest plugin and ``wrenn --help`` load.

Each check runs a fresh interpreter and reads ``sys.modules`` afterwards: which modules
got imported, never how long it took (speed figures live in benchmarks/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import wrenn

HEAVY = ("httpx2", "httpcore", "h11", "wsproto", "anyio", "attr", "attrs", "cattrs", "ssl")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    # the list is taken before the probe's own `import json`
    probe = f"{code}\nimport sys\nloaded = sorted(sys.modules)\n"
    probe += "import json\nprint(json.dumps(loaded))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_import_wrenn_loads_no_transport_and_no_models() -> None:
    modules = loaded_after("import wrenn")
    assert heavy(modules) == []
    assert sorted(m for m in modules if m.startswith("wrenn")) == ["wrenn", "wrenn._version"]


def test_a_name_is_loaded_on_first_use_with_what_it_needs() -> None:
    # the errors alone need no HTTP stack
    assert heavy(loaded_after("from wrenn import WrennError")) == []
    modules = loaded_after("from wrenn import AsyncWrennClient")
    assert {"httpx2", "anyio", "wrenn._client"} <= modules
    # wsproto and the code runner's Jupyter reader wait for the first WebSocket / cell
    assert "wsproto" not in modules
    assert "wrenn._protocol.jupyter" not in modules


def test_every_public_name_resolves_and_says_it_lives_in_wrenn() -> None:
    code = textwrap.dedent(
        """
        import inspect, wrenn
        from wrenn import *  # noqa: F403
        bad = [n for n in wrenn.__all__ if n not in globals()]
        bad += [n for n in wrenn.__all__ if inspect.isclass(getattr(wrenn, n))
                and getattr(wrenn, n).__module__.split(".")[-1].startswith("_")]
        assert not bad, bad
        assert set(wrenn.__all__) <= set(dir(wrenn))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_deprecated_aliases_still_warn_and_resolve() -> None:
    with pytest.warns(FutureWarning, match="Sandbox"):
        assert wrenn.Sandbox is wrenn.Capsule
    with pytest.raises(AttributeError, match="no_such_name"):
        wrenn.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wrenn.StreamStdoutEvent is wrenn.StreamStdout


def test_the_pytest_plugin_imports_no_sdk_module() -> None:
    modules = loaded_after("import wrenn.pytest_plugin")
    assert heavy(modules) == []
    sdk = sorted(m for m in modules if m.startswith("wrenn"))
    assert sdk == ["wrenn", "wrenn._version", "wrenn.pytest_plugin"]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["exec", "--help"]])
def test_wrenn_help_parses_before_loading_the_sdk(argv: list[str]) -> None:
    code = "from wrenn._cli.main import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass"
    code %= (argv,)
    modules = loaded_after(code)
    assert heavy(modules) == []
    assert not {"wrenn._session", "wrenn._client", "wrenn._transport.http"} & modules
    # nor the CLI's own heavier parts, nor standard modules that only some commands need
    # (each costs a user waiting for `wrenn --help` 3-10 ms: docs/benchmarks.md)
    added = modules - loaded_after("pass")
    assert not {"wrenn._cli.local", "wrenn._cli.completion", "wrenn._cli.demo"} & added
    unneeded = {"subprocess", "dataclasses", "inspect", "pathlib", "shutil", "json"}
    unneeded |= {"traceback", "threading", "asyncio", "importlib.util"}
    assert sorted(unneeded & added) == []


def test_lazy_names_keep_their_static_types(tmp_path: Path) -> None:
    """mypy sees every public name with its real type (the TYPE_CHECKING imports), not
    the ``Any`` of the module's ``__getattr__``: a wrong use or a misspelt name is still
    an error."""
    api = pytest.importorskip("mypy.api")
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            import wrenn
            from wrenn import AsyncWrennClient, WrennError

            a: int = AsyncWrennClient
            b: int = wrenn.Capsule
            c: int = WrennError
            d: int = wrenn.models
            e = wrenn.Capsul
            """
        )
    )
    root = Path(__file__).resolve().parent.parent
    out, _, _ = api.run(
        ["--strict", "--no-error-summary", f"--config-file={root / 'pyproject.toml'}", str(sample)]
    )
    for name in ("AsyncWrennClient", "Capsule", "WrennError", "Module", '"Capsul"'):
        assert name in out, out
    assert out.count("error:") == 5, out
