"""The capsule port proxy: Host-header routing into each capsule's own network."""

from __future__ import annotations

import anyio
import httpx

import wrenn_local
from tests.localserver import FAST, new_capsule, sh, wait_status
from tests.test_local_files import write
from wrenn._transport.websocket import connect_websocket

# A small HTTP service for inside a capsule: echoes method, path, headers and body.
ECHO_HTTP = r"""
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({"method": self.command, "path": self.path, "name": sys.argv[2],
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = _answer
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# The start of a WebSocket service with the standard library only: it accepts each
# client's handshake on port argv[1] (socket ``c``, its reader ``f``); what follows it
# (indented as the accept loop's body) serves that client.
WS_SERVICE = r"""
import base64, hashlib, socket, struct, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen()
while True:
    c, _ = srv.accept(); f = c.makefile("rb")
    key = None
    while (line := f.readline().strip()):
        k, _, v = line.decode().partition(":")
        if k.lower() == "sec-websocket-key": key = v.strip()
    if key is None:  # a readiness probe, not a WebSocket client
        c.close(); continue
    magic = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    acc = base64.b64encode(hashlib.sha1(magic.encode()).digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
"""

# A minimal WebSocket echo server.
ECHO_WS = (
    WS_SERVICE
    + r"""
    while True:
        h = f.read(2)
        if len(h) < 2: break
        op, n = h[0] & 15, h[1] & 127
        if n == 126: n = struct.unpack(">H", f.read(2))[0]
        elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4); data = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
        if op == 8: c.sendall(b"\x88\x02" + data[:2]); break
        reply = data.upper() if op == 1 else data
        size = len(reply)
        if size < 126: head = bytes([0x80 | op, size])
        elif size < 65536: head = bytes([0x80 | op, 126]) + struct.pack(">H", size)
        else: head = bytes([0x80 | op, 127]) + struct.pack(">Q", size)
        c.sendall(head + reply)
    c.close()
"""
)


async def start_service(http: httpx.AsyncClient, cid: str, script: str, *args: str) -> None:
    await write(http, cid, "/tmp/svc.py", script.encode())
    await sh(http, cid, "python3 /tmp/svc.py " + " ".join(args), background=True)
    probe = (
        'python3 -c "import socket,time\nfor _ in range(100):\n try:\n'
        f"  socket.create_connection(('127.0.0.1',{args[0]})).close(); break\n"
        ' except OSError: time.sleep(0.05)"'
    )
    await sh(http, cid, probe)


def host(port: int, cid: str, server: wrenn_local.LocalServer) -> dict[str, str]:
    return {"Host": f"{port}-{cid}.{server.proxy_domain}"}


async def test_http_reaches_each_capsules_own_port() -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        if server.isolation != "full":
            return  # separate loopbacks need network namespaces
        a, b = await new_capsule(http), await new_capsule(http)
        await start_service(http, a, ECHO_HTTP, "8000", "A")
        await start_service(http, b, ECHO_HTTP, "8000", "B")
        got_a = (await http.get("/hello?x=1", headers=host(8000, a, server))).json()
        got_b = (await http.get("/", headers=host(8000, b, server))).json()
        assert (got_a["name"], got_a["path"], got_b["name"]) == ("A", "/hello?x=1", "B")
        assert "x-api-key" not in got_a["headers"]  # the team's key never enters the VM
        posted = (
            await http.post("/submit", content=b"payload" * 1000, headers=host(8000, a, server))
        ).json()
        assert (posted["method"], posted["body"]) == ("POST", "payload" * 1000)


async def test_proxy_errors_are_plain_text() -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        cid = await new_capsule(http)
        nothing = await http.get("/", headers=host(9999, cid, server))
        assert nothing.status_code == 502
        assert nothing.text.startswith("proxy error:")
        assert nothing.headers["content-type"].startswith("text/plain")
        unknown = await http.get("/", headers=host(8000, "cl-" + "0" * 25, server))
        assert (unknown.status_code, unknown.text) == (404, "capsule not found\n")
        bad = await http.get("/", headers=host(70000, cid, server))
        assert (bad.status_code, bad.text) == (400, "invalid port\n")
        no_key = await http.get("/", headers={**host(8000, cid, server), "X-API-Key": ""})
        assert no_key.status_code == 401
        await http.post(f"/v1/capsules/{cid}/pause")
        await wait_status(http, cid, "paused")
        paused = await http.get("/", headers=host(8000, cid, server))
        assert (paused.status_code, paused.text) == (
            409,
            "capsule is not running (status: paused)\n",
        )


async def test_websocket_through_the_proxy() -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        cid = await new_capsule(http)
        await start_service(http, cid, ECHO_WS, "8765")
        # connect to the server's address, naming the capsule's port in the Host header
        # (what a client that resolves *.localhost would send)
        url = server.base_url.replace("http://", "ws://") + "/chat"
        headers = {"X-API-Key": server.api_key, **host(8765, cid, server)}
        async with connect_websocket(url, headers=headers) as ws:
            await ws.send_text("shout")
            with anyio.fail_after(10):
                assert await ws.receive() == "SHOUT"
            await ws.send_bytes(b"\x00\x01")
            with anyio.fail_after(10):
                assert await ws.receive() == b"\x00\x01"
            # a message that reaches the proxy in many pieces arrives whole
            await ws.send_text("x" * 300_000 + "end")
            with anyio.fail_after(10):
                assert await ws.receive() == "X" * 300_000 + "END"
