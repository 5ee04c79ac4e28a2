"""Project automation. ``python -m nox`` runs lint, typecheck and tests (the CI set).

Sessions:
  tests      the whole test suite; every async test runs under asyncio and trio
  lint       ruff check + ruff format --check
  typecheck  mypy --strict over src and tests
  bench      benchmarks (never part of the test suite)
  docs       API reference from the docstrings, offline
  compat     the official wrenn 0.3.0 SDK against the local server
  official_suites  the official SDK's own live-server test suites, with its SDK and ours
  demo       the demo against the embedded local server
  slow       the slow sweeps (the full cancellation matrix)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "compat", "official_suites"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")


def group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


# capsule networking (wrenn_local/_network.py): pasta and nft; without them, no network
NETWORK_PACKAGES = ("passt", "nftables", "iproute2")
# e2fsprogs: mkfs.ext4 for the per-capsule disk images that enforce disk_size_mb
SANDBOX_INSTALL = ["apt-get", "install", "-y", "-qq", "bubblewrap", "e2fsprogs", *NETWORK_PACKAGES]


def ensure_sandbox_tools(session: nox.Session) -> None:
    """Install what the local server's capsules use where apt is available: bubblewrap
    (isolation), e2fsprogs (disk quotas), passt's pasta, nftables and iproute2 (outbound
    network with the host filtered out).

    Guarded: without apt, or without root, the local server runs in its reduced-isolation
    mode, or without capsule network, and says why.
    """
    tools = {
        "bwrap": "bubblewrap",
        "mkfs.ext4": "e2fsprogs",
        "pasta": "passt",
        "nft": "nftables",
        "ip": "iproute2",
    }
    missing = [package for tool, package in tools.items() if not shutil.which(tool)]
    if not missing:
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        session.log(
            f"not installed: {', '.join(missing)}, and apt-get is unavailable (or not root): "
            "the local server runs with what it finds and says what it lacks"
        )
        return
    session.log(
        f"installing {', '.join(missing)} with apt-get (once): the local server isolates "
        "capsules with bubblewrap, caps their disks with ext4 images and gives them a filtered "
        "network with pasta and nftables"
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], SANDBOX_INSTALL):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            session.log(f"{' '.join(cmd)} failed; continuing with what is installed")
            session.log(result.stderr[-500:])
            return


def official_sdk_venv(session: nox.Session, where: Path, *extra: str) -> Path:
    """A virtual environment holding the official wrenn 0.3.0 SDK (also called ``wrenn``,
    so never in ours), plus ``extra`` packages; made once. Returns its python."""
    python = where / "bin" / "python"
    if not python.exists():
        session.run("python", "-m", "venv", str(where))
        session.run(
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--ignore-requires-python",
            "wrenn==0.3.0",
            *extra,
            external=True,
        )
    return python


# The suite runs in worker processes, one per core (at most four): most of a test's time
# is spent waiting on capsules, servers and subprocesses, so two workers on two cores
# take ~55 % of one process's wall time. Each worker has its own servers; the tests share
# nothing on the machine but what two servers of one user would (tests/test_local_cgroups.py).
# Work is handed out by index ("worksteal"), not by node id: schemathesis under pytest 9
# gives its 40 generated tests one node id, which the by-file scheduler would collapse
# into one. `-n 0` after `--` runs everything in this process.
PARALLEL = ["-n", "auto", "--maxprocesses", "4", "--dist", "worksteal"]


@nox.session
def tests(session: nox.Session) -> None:
    ensure_sandbox_tools(session)
    session.install("-e", ".[local,code,cli]", *group("test"))
    session.run("python", "-m", "pytest", *PARALLEL, *(session.posargs or ["tests"]))


@nox.session(venv_backend="virtualenv")
def compat(session: nox.Session) -> None:
    """The official SDK (Python >= 3.13 on paper, runs on 3.11) against wrenn_local.

    The official package is also called ``wrenn``, so it gets this environment to itself;
    the server runs from ``src/`` with only its own dependencies installed.
    """
    ensure_sandbox_tools(session)
    session.install(
        "starlette>=0.47",
        "hypercorn>=0.17",
        "python-multipart>=0.0.20",
        "anyio>=4.14",
        "attrs>=24.1",
        "jupyter_server>=2.14",
        "ipykernel>=6.29",
    )
    session.run("python", "-m", "pip", "install", "-q", "--ignore-requires-python", "wrenn==0.3.0")
    server = subprocess.Popen(
        [session.virtualenv.bin + "/python", "-m", "wrenn_local", "serve", "--port", "0"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        env = dict(
            line.strip().split("=", 1)
            for line in (server.stdout.readline(), server.stdout.readline())
        )
        # The official SDK reaches capsule ports as {port}-{id}.{proxy domain}; the
        # script resolves *.localhost itself, as wildcard DNS does for the cloud.
        port = env["WRENN_BASE_URL"].rsplit(":", 1)[1].split("/")[0]
        env["WRENN_PROXY_DOMAIN"] = f"localhost:{port}"
        session.run("python", "tests/compat/official_sdk.py", env=env)
    finally:
        server.terminate()
        server.wait(30)


# Tests of the official suites that need what this machine or wrenn_local cannot give yet;
# docs/migration.md lists each with its reason.
OFFICIAL_DESELECTED = [
    "tests/test_integration_advanced.py::TestGitClone",
    "tests/test_integration_advanced.py::TestGitErrors::test_clone_with_branch",
    "tests/test_code_runner_e2e.py::TestCodeRunnerMimeTypes::test_requests_status_code",
]
OFFICIAL_SUITES = [
    "tests/test_integration.py",
    "tests/test_integration_advanced.py",
    "tests/test_code_runner_e2e.py",
]


def start_local_server(
    python: str, env: dict[str, str], *options: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A wrenn_local process on a free port; returns it and the variables to reach it."""
    server = subprocess.Popen(
        [python, "-m", "wrenn_local", "serve", "--port", "0", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    found = dict(
        line.strip().split("=", 1) for line in (server.stdout.readline(), server.stdout.readline())
    )
    port = found["WRENN_BASE_URL"].rsplit(":", 1)[1].split("/")[0]
    found["WRENN_PROXY_DOMAIN"] = f"localhost:{port}"
    return server, found


def account_of_its_own(base_url: str, name: str) -> str:
    """An API key of a new account (a team of its own) on a local server started with
    ``--allow-signup``: sign up, log in, make a key. Plain urllib: nox's own Python has
    no HTTP client of ours."""
    import json
    import urllib.request

    def post(path: str, body: dict[str, str], token: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            base_url.rstrip("/") + path, json.dumps(body).encode(), headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            result: dict[str, str] = json.load(response)
            return result

    person = {"email": f"{name}@suites.localhost", "password": "suites-" + name}
    post("/v1/auth/signup", {**person, "name": name})
    token = post("/v1/auth/login", person)["token"]
    return post("/v1/api-keys", {"name": name}, token)["key"]


@nox.session
def official_suites(session: nox.Session) -> None:
    """The official SDK's own live-server suites (from its 0.3.0 sdist, fetched at run
    time, never committed) against wrenn_local: once with the official SDK, in an
    environment of its own, and once with ours installed as ``wrenn``. Both must pass."""
    ensure_sandbox_tools(session)
    # the `code` extra brings the code runner's scientific stack (numpy, pandas, ...)
    session.install("-e", ".[local,code]", "pytest>=8.4", "pytest-asyncio>=1.0", "pip")
    tmp = Path(session.create_tmp()).resolve()
    sdist_dir = tmp / "sdist"
    shutil.rmtree(sdist_dir, ignore_errors=True)
    session.run(
        "python",
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--ignore-requires-python",
        "wrenn==0.3.0",
        "-d",
        str(sdist_dir),
    )
    (archive,) = sdist_dir.glob("wrenn-0.3.0.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(sdist_dir, filter="data")
    suites = sdist_dir / "wrenn-0.3.0"
    official_python = official_sdk_venv(
        session, tmp / "official-venv", "pytest>=8.4", "pytest-asyncio>=1.0"
    )
    server, reach = start_local_server(
        session.virtualenv.bin + "/python",
        {**os.environ, "PYTHONPATH": str(ROOT / "src")},
        "--allow-signup",
    )
    args = [
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "-p",
        "localhost_plugin",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *(f"--deselect={test}" for test in OFFICIAL_DESELECTED),
        *OFFICIAL_SUITES,
    ]
    env = {**os.environ, **reach, "PYTHONPATH": str(ROOT / "tests" / "compat")}
    runs = {"official SDK": str(official_python), "this SDK": session.virtualenv.bin + "/python"}
    logs = {name: tmp / f"{name.replace(' ', '-')}.log" for name in runs}
    started = time.monotonic()
    try:
        # both at once, against one server, each as an account of its own: they share the
        # machine and the wire, never a team (one run's capsules would show in the other's
        # lists and event stream, as another program's do in the cloud)
        procs = {}
        for name, python in runs.items():
            key = account_of_its_own(reach["WRENN_BASE_URL"], name.replace(" ", "-").lower())
            with logs[name].open("w") as out:
                procs[name] = subprocess.Popen(
                    [python, *args],
                    cwd=suites,
                    env={**env, "WRENN_API_KEY": key},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        for proc in procs.values():
            proc.wait()
    finally:
        server.terminate()
        server.wait(30)
    session.log(f"both runs took {time.monotonic() - started:.0f} s")
    failed = []
    for name, proc in procs.items():
        session.log(f"--- {name} ---\n{logs[name].read_text()[-6000:]}")
        if proc.returncode != 0:
            failed.append(name)
    if failed:
        session.error(f"the official suites failed with: {', '.join(failed)}")


@nox.session
def slow(session: nox.Session) -> None:
    """The slow sweeps (never part of the default run): the full cancellation matrix,
    ``WRENN_MATRIX_POINTS`` points per backend (default 1,000)."""
    ensure_sandbox_tools(session)
    session.install("-e", ".[local,code,cli]", *group("test"))
    session.run("python", "-m", "pytest", *PARALLEL, "-m", "slow", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[local,cli]", *group("typecheck"))
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark side by side (never part of the test suite). The official wrenn
    0.3.0 SDK, which is also called ``wrenn``, gets a virtual environment of its own."""
    ensure_sandbox_tools(session)
    # not editable: start-up figures must be those of an installed wheel, as users have it
    session.install(
        ".[local,code,cli,fast]",
        "httpx>=0.28.1",
        "httpx-ws>=0.9",
        "matplotlib>=3.8",
        *group("test"),
        env={"UV_COMPILE_BYTECODE": "1"},  # pip compiles on install; uv only when asked
    )
    python = official_sdk_venv(session, Path(session.virtualenv.location).parent / "bench-official")
    env = {"WRENN_OFFICIAL_PYTHON": str(python)}
    baseline = baseline_venv(session, os.environ.get("WRENN_BASELINE_REF", BENCH_BASELINE_REF))
    if baseline is not None:
        env["WRENN_BASELINE_PYTHON"] = str(baseline)
    session.run("python", "benchmarks/run.py", *session.posargs, env=env)


# "today's main" in issue 20's targets: main when the work on it started
BENCH_BASELINE_REF = "ab40185"


def baseline_venv(session: nox.Session, ref: str) -> Path | None:
    """A virtual environment holding this project as of git ``ref`` (the benchmarks'
    "baseline" rows), made once per ref. None, with the reason, outside a git clone that
    has the ref (e.g. a shallow clone or an sdist)."""
    where = Path(session.virtualenv.location).parent / f"bench-baseline-{ref}"
    python = where / "bin" / "python"
    if python.exists():
        return python
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        session.warn(f"no baseline rows: git ref {ref} is not in this checkout")
        return None
    source = where.with_name(where.name + "-src")
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    session.run("python", "-m", "venv", str(where))
    session.run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        f"{source}[local,code,cli,trio,fast]",
        "pytest",  # the start-up figure times the pytest plugin
        external=True,
    )
    return python


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, offline: docs/*.md as HTML plus the API reference from
    the docstrings (pdoc), in docs/_build/. Fails on a pdoc warning or a dead link."""
    session.install("-e", ".[local]", "pdoc>=15", "markdown>=3.6")
    session.run("python", "docs/render.py")
    out = ROOT / "docs" / "_build" / "api"
    log = session.run(
        "python", "-m", "pdoc", "--docformat", "google", "-o", str(out), "wrenn", silent=True
    )
    # pdoc colours its "Warn:" prefix, so look for it anywhere in the line
    warnings = [line for line in str(log or "").splitlines() if "Warn:" in line]
    if warnings:
        session.error("pdoc warned:\n" + "\n".join(warnings))
    session.log(f"API reference written to {out}")


@nox.session
def demo(session: nox.Session) -> None:
    ensure_sandbox_tools(session)
    session.install("-e", ".[local,cli]")
    session.run("python", "-m", "wrenn", "demo", *session.posargs)
