"""The local server in a process of its own, for a ``with`` block (tests, benchmarks,
scripts that must not share an event loop or a process with the server)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["server_process"]


@contextmanager
def server_process(*options: str, stop_timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Run ``python -m wrenn_local serve --port 0 [options]`` for the block.

    Yields its two variables, ``{"WRENN_BASE_URL": ..., "WRENN_API_KEY": ...}``, once it
    accepts connections. Leaving the block stops it with SIGTERM (every capsule is
    destroyed), and kills it if it has not stopped within ``stop_timeout`` seconds.
    """
    with subprocess.Popen(
        [sys.executable, "-m", "wrenn_local", "serve", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline().strip() for _ in range(2)]
            env = dict(line.split("=", 1) for line in lines if "=" in line)
            if set(env) != {"WRENN_BASE_URL", "WRENN_API_KEY"}:
                raise RuntimeError(f"the local server did not start (exit code {proc.poll()})")
            yield env
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
