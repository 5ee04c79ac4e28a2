"""The agent's start: what it loads before it answers, and what it loads on first use."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import wrenn_local
from tests.localserver import local_http, new_capsule, sh
from wrenn_local._agent_client import AgentClient, AgentFailure
from wrenn_local._inside import AGENT

# Shared libraries behind the modules the agent defers (agent.py, at its imports) or blocks
# (ssl): OpenSSL (secrets -> hmac -> _hashlib, and ssl), libffi (ctypes), lzma and bz2
# (shutil), termios. Each costs a capsule boot its loading and relocation.
NOT_AT_BOOT = ("libcrypto", "libssl", "libffi", "liblzma", "libbz2", "_ctypes", "termios")


def _agent_pid(server: wrenn_local.LocalServer, cid: str) -> int:
    """The host pid of a capsule's agent, found from the sandbox's process (an internal:
    nothing on the wire names host pids)."""
    sandbox = server.capsules.capsules[cid].sandbox
    assert sandbox is not None
    assert sandbox.process is not None
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    todo = [sandbox.process.pid]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            # not bubblewrap (whose command line names the agent too), not the files
            # worker; the first one down the tree is the agent (the spawner is its child)
            python = os.path.basename(argv[0]).startswith(b"python")
            if python and b"/run/wrenn/agent.py" in argv and b"--files-worker" not in argv:
                return pid
        todo.extend(children.get(pid, []))
    raise AssertionError("no agent in the capsule's process tree")


def _maps(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/maps").read_text().splitlines()


def _loaded(pid: int) -> set[str]:
    """The shared objects mapped into a process, of those the agent must not load at boot."""
    maps = "\n".join(_maps(pid))
    return {name for name in NOT_AT_BOOT if name in maps}


async def test_the_agent_loads_only_what_it_needs_to_answer_then_the_rest_on_first_use() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation runs the agent from source, outside a capsule")
        cid = await new_capsule(http)
        agent = _agent_pid(server, cid)
        assert _loaded(agent) == set()  # the capsule is running: the agent has answered
        # and what it mapped is the capsule's own /usr: nothing of the server's environment
        fields = [line.split(maxsplit=5) for line in _maps(agent)]
        mapped = {f[5] for f in fields if len(f) == 6}  # anonymous mappings have no 6th
        outside = {m for m in mapped if not m.startswith(("/usr/", "["))}
        assert outside == set(), outside
        assert (await sh(http, cid, "echo hi"))["stdout"] == "hi\n"
        # A command whose argv and environment exceed the spawner's message limit is
        # started by the agent itself (the direct path): oom_first runs in the child,
        # with libc loaded by the agent on this first use (ctypes cannot load after fork).
        # (one variable holds at most 128 KiB: the kernel's MAX_ARG_STRLEN)
        big = {f"WRENN_BIG{i}": "x" * (100 * 1024) for i in range(3)}
        script = "cat /proc/self/oom_score_adj; echo ${#WRENN_BIG2}"
        direct = await sh(http, cid, script, envs=big)
        assert direct["exit_code"] == 0, direct
        assert direct["stdout"] in ("100\n102400\n", "1000\n102400\n"), direct
        assert "_ctypes" in _loaded(agent)  # loaded on first use, in the agent


@contextlib.asynccontextmanager
async def standalone_agent(
    tmp_path: Path, prelude: str
) -> AsyncIterator[tuple[anyio.abc.Process, AgentClient]]:
    """The agent run by itself (as reduced isolation runs it), after ``prelude`` (Python
    run first in its interpreter); answering once the block starts, SIGTERMed at its end
    if still running."""
    socket_path = tmp_path / "agent.sock"
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"root": str(tmp_path), "home": "/", "switch_user": False}))
    # run as a capsule runs it: not through runpy.run_path, whose pkgutil loads typing
    # and re before the agent starts
    launcher = (
        f"{prelude}\nimport sys\n"
        "sys.argv = sys.argv[1:]\n"
        "with open(sys.argv[0]) as source:\n"
        "    code = compile(source.read(), sys.argv[0], 'exec')\n"
        "exec(code, {'__name__': '__main__', '__file__': sys.argv[0]})\n"
    )
    command = [sys.executable, "-I", "-S", "-c", launcher, str(AGENT), str(socket_path)]
    command.append(str(config))
    client = AgentClient(socket_path)
    async with await anyio.open_process(command, stdin=subprocess.DEVNULL) as process:
        try:
            with anyio.fail_after(20):
                while not await client.ping():
                    await anyio.sleep(0.02)
            yield process, client
        finally:
            client.close()
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()


async def test_a_deferred_module_that_cannot_load_fails_the_request_not_the_agent(
    tmp_path: Path,
) -> None:
    # A Python whose ctypes cannot be imported: a capsule image with a broken or stripped
    # standard library, which no capsule this server builds has, hence the block.
    blocked = "import sys; sys.modules['ctypes'] = None"
    async with standalone_agent(tmp_path, blocked) as (process, client):
        with pytest.raises(AgentFailure) as failed:
            async with client.exec("/bin/true", args=[], envs={}):
                pass
        assert failed.value.code == "agent_error"
        assert "ModuleNotFoundError" in str(failed.value)
        assert await client.ping()  # the agent still serves
        assert process.returncode is None


# What the agent does with asyncio's loggers and ``inspect`` once its start-up is over (agent.py,
# _import_asyncio_with_logging_and_inspect_deferred): run by the agent's own module-level code in a
# fresh interpreter, which is the only place a module can be imported for the first time.
_LOGGING_PROBE = r"""
import sys
if sys.argv[2] == "break":  # a Python whose asyncio the stand-in breaks: the fall-back
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "asyncio.log" and type(sys.modules.get("logging")).__name__ == "StandIn":
                raise ImportError("no stand-in here")
    sys.meta_path.insert(0, Refuse())
# run as a capsule runs it (not runpy.run_path: its pkgutil loads re and typing first)
with open(sys.argv[1]) as source:
    exec(compile(source.read(), sys.argv[1], "exec"), {"__name__": "agent"})
import asyncio.log, concurrent.futures._base as futures
loop = asyncio.new_event_loop()  # logs "Using selector" (debug)
loop.close()
asyncio.log.logger.info("dropped, as logging's default level drops it")
print("loaded at start:", "logging" in sys.modules, "inspect" in sys.modules)
DEFERRED = ("typing", "traceback", "linecache", "locale", "re")
print("also at start:", [name for name in DEFERRED if name in sys.modules])
asyncio.log.logger.warning("asyncio warns")  # logging's last-resort handler: stderr
import logging
print("real:", type(sys.modules["logging"]).__name__, logging.getLogger("asyncio").level)
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s: %(message)s")
asyncio.log.logger.debug("configured")
futures.LOGGER.info("futures too")
async def coroutine_function(): pass
print("inspect works:", asyncio.iscoroutinefunction(coroutine_function), "inspect" in sys.modules)
import inspect
print("real:", type(inspect).__name__, inspect.isfunction(coroutine_function))
# each deferred module works on first use: traceback (a debug loop's source traceback,
# through the function asyncio's C accelerator took while the stand-in was in place),
# typing (imported afresh: the real one), locale (a text-mode pipe), timeouts (@final)
logging.getLogger().setLevel(logging.WARNING)  # no "Using selector" for the loops below
debug = asyncio.new_event_loop()
debug.set_debug(True)
task = debug.create_task(coroutine_function())
debug.run_until_complete(task)
debug.close()
created_at = task._source_traceback[-1].filename  # this script's line, as asyncio's own
print("traceback:", type(task._source_traceback).__name__, "traceback" in sys.modules, created_at)
import typing
print("typing:", type(typing).__name__, typing.Optional[int])
import subprocess
print("locale:", repr(subprocess.run(["echo", "x"], capture_output=True, text=True).stdout))
async def bounded():
    async with asyncio.timeout(5) as scope:
        await asyncio.sleep(0)
    return type(scope).__name__
print("timeout:", asyncio.run(bounded()))
# asyncio's own exceptions are the ones its futures raise (after a fall-back too: the C
# accelerator loaded by the failed attempt holds that attempt's classes)
async def exceptions():
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    try:
        await future
    except asyncio.CancelledError:
        pass
    try:
        asyncio.get_running_loop().create_future().result()
    except asyncio.InvalidStateError:
        pass
    try:
        await asyncio.wait_for(asyncio.sleep(5), 0.01)
    except TimeoutError:
        return "caught"
print("exceptions:", asyncio.run(exceptions()))
"""


@pytest.mark.parametrize("python", ["as is", "break"])
def test_asyncio_loads_without_logging_or_inspect_which_load_on_first_real_use(python: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LOGGING_PROBE, str(AGENT), python],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = result.stdout.splitlines()
    # the stand-in keeps logging out of the agent's start; the fall-back imports it
    fell_back = python == "break"
    assert out[0] == f"loaded at start: {fell_back} {fell_back}"
    # (linecache, locale and re may be loaded by what the fall-back imports)
    assert out[1] == "also at start: []" or fell_back, out[1]
    assert "dropped" not in result.stdout + result.stderr
    assert result.stderr.strip() == "asyncio warns"
    assert out[2:] == [
        "real: module 0",
        "asyncio: configured",
        "concurrent.futures: futures too",
        "inspect works: True True",  # asyncio's first use of inspect loaded it
        "real: module True",
        "traceback: StackSummary True <string>",
        "typing: module typing.Optional[int]",
        "locale: 'x\\n'",
        "timeout: Timeout",
        "exceptions: caught",
    ]


async def test_the_agent_serves_and_stops_on_sigterm_without_ever_loading_what_it_defers(
    tmp_path: Path,
) -> None:
    # a finder placed first in sys.meta_path notes every real import of a module the
    # agent defers (a stand-in, in sys.modules, is never looked up) or of json (the
    # agent's codec is _json's alone); it names where from by walking the frames itself
    # (the traceback module is among those noted)
    noted = tmp_path / "deferred-loaded"
    note = (
        "import sys\n"
        "class Note:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('inspect', 'json', 'logging', 'typing', 'traceback',\n"
        "                    'linecache', 'locale', 're'):\n"
        "            frame, where = sys._getframe(1), [name]\n"
        "            while frame is not None:\n"
        "                where.append(f'{frame.f_code.co_filename}:{frame.f_lineno}')\n"
        "                frame = frame.f_back\n"
        f"            with open({str(noted)!r}, 'a') as out:\n"
        "                out.write('\\n'.join(where) + '\\n\\n')\n"
        "sys.meta_path.insert(0, Note())"
    )
    async with standalone_agent(tmp_path, note) as (process, client):
        async with client.exec("/bin/echo", args=["hi"], envs={}) as run:
            while await run.next() is not None:
                pass
        process.send_signal(signal.SIGTERM)  # handled: the agent stops by itself
        with anyio.fail_after(20):
            assert await process.wait() == 0
    assert not noted.exists(), noted.read_text()


# The agent's JSON codec (agent.py, _json_codec) against the json package, in a fresh
# interpreter: the same text out, the same values back, the same errors.
_CODEC_PROBE = r"""
import json, math, runpy, sys
if sys.argv[2] == "no _json":  # a Python without the accelerator: the json package
    sys.modules["_json"] = None
agent = runpy.run_path(sys.argv[1], run_name="agent")
dumps, loads = agent["dumps"], agent["loads"]
print(dumps.__name__)
values = [
    {}, [], "", 0, -1, 2**70, -(2**70), 0.1, -2.5e-308, 1e308, True, False, None,
    "\u00e9\u2603\U0001f600 \x00\x1f\"\\/\t\n", {"k": [1, {"n": None}], "é": "x"},
    [[[]]], {"a": 1.5, "b": [True, False]}, "x" * 100000,
]
for value in values:
    text = dumps(value)
    assert text == json.dumps(value, separators=(",", ":")), (value, text)
    assert loads(text) == value and loads(text.encode()) == value, value
for text in ("  {\"a\": [1 , 2]}\n", "\t[]\r\n", '"\\ud83d\\ude00"', "NaN", "-Infinity", "1e5"):
    assert repr(loads(text)) == repr(json.loads(text)), text
assert math.isnan(loads("[NaN]")[0])
for bad in ("", " ", "{", "[1,]", "{} x", "nul", "[1] [2]", "{'a': 1}", b"\xff"):
    try:
        loads(bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"accepted {bad!r}")
for bad in (object(), {1j: 1}, {"a": {1, 2}}):
    try:
        dumps(bad)
    except TypeError:
        pass
    else:
        raise AssertionError(f"encoded {bad!r}")
loop = []
loop.append(loop)
try:
    dumps(loop)
except ValueError:
    pass
else:
    raise AssertionError("encoded a circular list")
print("ok")
"""


def _capsule_pythons() -> list[str]:
    """The server's Python and the host's system Python (what capsules run), if any."""
    found = [sys.executable]
    system = Path("/usr/bin/python3")
    if system.exists() and system.resolve() != Path(sys.executable).resolve():
        found.append(str(system))
    return found


@pytest.mark.parametrize("python", _capsule_pythons())
@pytest.mark.parametrize("variant", ["as is", "no _json"])
def test_the_agents_json_codec_is_the_json_packages(python: str, variant: str) -> None:
    result = subprocess.run(
        [python, "-I", "-S", "-c", _CODEC_PROBE, str(AGENT), variant],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # the fast codec where _json is there; json's own functions where it is not
    assert result.stdout.splitlines() == [
        "dumps" if variant == "as is" else "json_dumps",
        "ok",
    ]
