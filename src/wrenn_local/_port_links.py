"""Port links a browser can open: a short-lived signed token traded for a cookie.

A browser cannot send ``X-API-Key``, so the port proxy (``_proxy.py``) also accepts:

* a **token** in the query (``?wrenn_token=…``), issued by an authenticated API call
  (``POST /v1/capsules/{id}/ports/{port}/browser-token``): an HMAC-SHA256, with a secret
  made fresh by each server, over the capsule ID, the port and an expiry (10 minutes by
  default). It is accepted **once**: the proxy answers with a redirect to the same URL
  without it and sets
* a **cookie** (``wrenn_port``): HttpOnly, SameSite=Strict, host-only (no ``Domain``), so
  the browser sends it only to that ``{port}-{capsule_id}.localhost`` name; its own MAC
  binds it to the same capsule and port, so it opens nothing else.

The proxy removes both before a request enters the capsule: code in the capsule never
sees them. Tokens and cookies die with the server (the secret is never written down).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Final

__all__ = ["COOKIE", "QUERY", "PortLinks", "split_query", "without_cookie"]

QUERY: Final = "wrenn_token"
COOKIE: Final = "wrenn_port"
COOKIE_SECONDS: Final = 12 * 3600


class PortLinks:
    """Issue and check port tokens and cookies for one server."""

    def __init__(self, token_seconds: float = 600.0) -> None:
        self._secret = secrets.token_bytes(32)
        self.token_seconds = token_seconds
        self._spent: dict[str, int] = {}  # MAC of a redeemed token → its expiry

    def _mac(self, purpose: str, capsule_id: str, port: int, expires: int) -> str:
        text = f"{purpose}\n{capsule_id}\n{port}\n{expires}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()

    def _signed(self, purpose: str, capsule_id: str, port: int, expires: int) -> str:
        return f"{expires}.{self._mac(purpose, capsule_id, port, expires)}"

    def _check(self, purpose: str, value: str, capsule_id: str, port: int) -> str | None:
        """The MAC of ``value`` when it is a valid, unexpired ``purpose`` value."""
        expires_text, _, mac = value.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12 or len(mac) != 64:
            return None
        expires = int(expires_text)
        if expires < time.time():
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, capsule_id, port, expires)):
            return None
        return mac

    def issue(self, capsule_id: str, port: int) -> tuple[str, int]:
        """A token for ``port`` of ``capsule_id``, and its expiry (Unix seconds)."""
        expires = int(time.time() + self.token_seconds)
        return self._signed("token", capsule_id, port, expires), expires

    def redeem(self, token: str, capsule_id: str, port: int) -> bool:
        """Whether ``token`` opens this capsule's port; a token opens it once only."""
        mac = self._check("token", token, capsule_id, port)
        if mac is None or mac in self._spent:
            return False
        now = time.time()
        for old in [m for m, expires in self._spent.items() if expires < now]:
            del self._spent[old]  # expired ones fail the check anyway
        self._spent[mac] = int(token.partition(".")[0])
        return True

    def cookie(self, capsule_id: str, port: int, *, secure: bool) -> str:
        """The ``Set-Cookie`` value that lets a browser back into this capsule's port."""
        expires = int(time.time() + COOKIE_SECONDS)
        value = self._signed("cookie", capsule_id, port, expires)
        flags = "; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        return f"{COOKIE}={value}; Max-Age={COOKIE_SECONDS}; Path=/{flags}"

    def cookie_opens(self, cookie_headers: Iterable[bytes], capsule_id: str, port: int) -> bool:
        """Whether one of our cookies in these ``Cookie`` headers opens this port."""
        for header in cookie_headers:
            for name, value in _pairs(header):
                if name == COOKIE and self._check("cookie", value, capsule_id, port):
                    return True
        return False


def _pairs(header: bytes) -> list[tuple[str, str]]:
    out = []
    for part in header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        out.append((name.strip(), value.strip().strip('"')))
    return out


def without_cookie(header: bytes) -> bytes:
    """A ``Cookie`` header without our cookie (empty when nothing else was in it)."""
    kept = [
        part.strip()
        for part in header.decode("latin-1").split(";")
        if part.strip() and part.strip().partition("=")[0].strip() != COOKIE
    ]
    return "; ".join(kept).encode("latin-1")


def split_query(query: bytes) -> tuple[bytes, str | None]:
    """The query string without ``wrenn_token`` (every occurrence), and the first token."""
    token: str | None = None
    kept = []
    for part in query.split(b"&"):
        name = part.partition(b"=")[0]
        if name == QUERY.encode():
            if token is None:
                token = part.partition(b"=")[2].decode("latin-1")
            continue
        if part:
            kept.append(part)
    return b"&".join(kept), token
