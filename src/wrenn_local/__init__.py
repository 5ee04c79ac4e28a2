"""wrenn_local: an embedded local Wrenn server.

A real HTTP server speaking the Wrenn wire protocol, running each capsule as an isolated
local sandbox. It never imports the ``wrenn`` SDK: the wire is the only contract::

    async with wrenn_local.serve() as server:
        print(server.base_url, server.api_key)

or in a process of its own, ``with wrenn_local.server_process() as env:``, or from a
shell: ``python -m wrenn_local serve --port 0`` (the same as ``wrenn_local.main()``).
"""

from __future__ import annotations

from ._cli import add_serve_arguments as add_serve_arguments
from ._cli import main as main
from ._isolation import Isolation as Isolation
from ._options import ServerOptions as ServerOptions
from ._process import server_process as server_process
from ._server import LocalServer as LocalServer
from ._server import serve as serve

__all__ = [
    "Isolation",
    "LocalServer",
    "ServerOptions",
    "add_serve_arguments",
    "main",
    "serve",
    "server_process",
]
