"""Programs that run inside a capsule: stdlib-only scripts, started by path, never imported.

Each runs under the capsule's own Python (``python -I <file>``), which may be the host's
system Python rather than the server's environment, so they import nothing but the
standard library and nothing of ``wrenn_local``. The server only needs their paths:

* :data:`BOOT`: mounts the capsule's root in a private mount namespace, joins its
  cgroups and becomes bubblewrap (full isolation only).
* :data:`AGENT`: the capsule's first process; serves the agent socket (the frame format
  is described there, the server's side is ``_agent_client.py``).
* :data:`SUDO`: the capsule's ``/usr/bin/sudo``: asks the agent to run a command as
  root of the capsule's user namespace (not setuid).
* :data:`JUPYTER`: writes the ``wrenn`` kernelspec and becomes Jupyter Server
  (the code-runner template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["AGENT", "BOOT", "JUPYTER", "SUDO"]

_HERE: Final = Path(__file__).parent
AGENT: Final = _HERE / "agent.py"
BOOT: Final = _HERE / "boot.py"
JUPYTER: Final = _HERE / "jupyter.py"
SUDO: Final = _HERE / "sudo.py"
