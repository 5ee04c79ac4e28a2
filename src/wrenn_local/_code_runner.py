"""The ``code-runner-beta`` template: a real Jupyter Server in every capsule (PROTOCOL §14).

Capsules of this template (and snapshots made from them) start Jupyter Server with
ipykernel on port 8888 inside the capsule, as the user ``wrenn-user``, with a random
token per capsule that only the server knows (its port proxy, which requires the team's
key, adds it to every request for port 8888) and no CORS headers, a kernelspec
named ``wrenn`` as the default, and the user's home as the root directory. The capsule is
reported ``running`` only once Jupyter answers ``GET /api/status``.

Jupyter comes from the server's own Python environment (the ``code`` extra installs
``jupyter_server`` and ``ipykernel``). Under full isolation that environment's
site-packages is bind-mounted read-only at :data:`SITE_IN_CAPSULE` and run by the
capsule's ``/usr/bin/python3`` (same minor version required, for compiled wheels);
under reduced isolation the server's interpreter runs it directly, and port 8888 is
mapped by the agent to a free host port so that capsules do not collide.
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import anyio
import attrs

from ._agent_client import AgentClient, AgentFailure
from ._inside import JUPYTER

__all__ = [
    "JUPYTER_PORT",
    "KERNEL_NAME",
    "SITE_IN_CAPSULE",
    "TEMPLATE",
    "JupyterSupport",
    "auth_header",
    "launch",
    "new_token",
    "wait_until_serving",
]

TEMPLATE: Final = "code-runner-beta"
KERNEL_NAME: Final = "wrenn"
JUPYTER_PORT: Final = 8888
SITE_IN_CAPSULE: Final = "/opt/wrenn-python-site"
READY_TIMEOUT: Final = 90.0


@attrs.frozen
class JupyterSupport:
    """Whether this server can run the code-runner template, and with what."""

    site_packages: Path | None
    problem: str | None

    @classmethod
    def detect(cls, capsule_python: str) -> JupyterSupport:
        origins = []
        for name in ("jupyter_server", "ipykernel"):
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                return cls(
                    None,
                    f"{TEMPLATE} needs jupyter_server and ipykernel on the server "
                    "(pip install 'wrenn[local,code]')",
                )
            origins.append(Path(spec.origin).parent.parent)
        if origins[0] != origins[1]:
            return cls(None, "jupyter_server and ipykernel are installed in different places")
        if capsule_python != sys.executable and not _same_minor(capsule_python):
            return cls(
                None,
                f"{capsule_python} is not Python {sys.version_info[0]}.{sys.version_info[1]} "
                "like the server, so the server's Jupyter packages cannot run in capsules",
            )
        return cls(origins[0], None)


def _same_minor(python: str) -> bool:
    import subprocess

    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == str(sys.version_info[:2])


def free_port() -> int:
    """A TCP port free on the host loopback right now (reduced isolation only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def new_token() -> str:
    """A Jupyter token for one capsule."""
    return secrets.token_urlsafe(32)


def auth_header(token: str) -> tuple[bytes, bytes]:
    """The header that opens Jupyter (the proxy adds it; clients never see the token)."""
    return (b"authorization", b"token " + token.encode())


async def launch(agent: AgentClient, python: str, site: str, port: int, token: str) -> None:
    """Start Jupyter in the capsule as the background process tagged ``jupyter``; it
    reads its token from the environment (never from argv)."""
    source = await anyio.Path(JUPYTER).read_text()
    await agent.exec_background(
        python,
        args=["-c", source, site, str(port)],
        envs={"PYTHONPATH": site, "PYTHONNOUSERSITE": "1", "JUPYTER_TOKEN": token},
        tag="jupyter",
    )


async def wait_until_serving(
    agent: AgentClient,
    token: str,
    *,
    timeout: float = READY_TIMEOUT,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Poll ``GET /api/status`` on port 8888 through the agent until Jupyter answers 200.

    Raises ``TimeoutError`` when it does not within ``timeout`` seconds, and
    ``RuntimeError`` as soon as ``stopped()`` (the sandbox was stopped meanwhile).
    """
    name, value = auth_header(token)
    request = (
        b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + name
        + b": "
        + value
        + b"\r\n\r\n"
    )
    with anyio.fail_after(timeout):
        while True:
            if stopped():
                raise RuntimeError("the sandbox was stopped while its services started")
            try:
                async with agent.connect(JUPYTER_PORT) as relay:
                    await relay.send(request)
                    answer = await relay.receive()
                    if answer is not None and answer.startswith(b"HTTP/1.1 200"):
                        return
            except AgentFailure:
                pass  # not listening yet
            await anyio.sleep(0.1)
