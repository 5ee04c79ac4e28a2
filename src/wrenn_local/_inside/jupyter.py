"""The code-runner template's service, run inside the capsule as ``python -c <this file>``.

Writes the ``wrenn`` kernelspec into the user's home, then replaces itself with Jupyter
Server on 127.0.0.1:<port>. Jupyter requires the token the server put in
``JUPYTER_TOKEN`` (never on a command line, which ``ps`` shows; the server's port proxy
adds it to every request) and sends no CORS headers, so neither a web page nor another
local account can drive it, even where its port is on the host's loopback (reduced
isolation).

Usage: python -c "$(cat jupyter.py)" <site-packages> <port>
"""

from __future__ import annotations

import json
import os
import sys


def main(site: str, port: str) -> None:
    home = os.path.expanduser("~")
    spec = os.path.join(home, ".local", "share", "jupyter", "kernels", "wrenn")
    os.makedirs(spec, exist_ok=True)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        json.dump(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (wrenn)",
                "language": "python",
                "env": {"PYTHONPATH": site},
                "interrupt_mode": "signal",
            },
            f,
        )
    os.chdir(home)
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=" + port,
            "--ServerApp.port_retries=0",
            # the Host is the proxy's name for the port; the token is the lock
            "--ServerApp.allow_remote_access=True",
            "--ServerApp.open_browser=False",
            "--ServerApp.root_dir=" + home,
            "--MappingKernelManager.default_kernel_name=wrenn",
            "--ServerApp.log_level=WARN",
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
