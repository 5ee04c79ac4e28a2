"""Users, teams, API keys and JWTs of the local server.

* API keys: ``wrn_`` + 32 hex characters, stored as SHA-256 digests only; the digest is
  compared with :func:`hmac.compare_digest`.
* Users sign up and log in with e-mail and password (PBKDF2-SHA256); a local server has
  no mail, so accounts are active at once. Login returns a 6-hour HS256 JWT.
* Every user has a team; capsules, keys and snapshots belong to a team.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any, Final

import attrs

from ._errors import ApiError
from ._ids import is_valid, new_id

__all__ = ["Accounts", "ApiKey", "AttemptThrottle", "Principal", "User"]

JWT_LIFETIME: Final = 6 * 3600
PBKDF2_ROUNDS: Final = 120_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@attrs.define
class User:
    id: str
    email: str
    name: str
    team_id: str
    password_hash: bytes = attrs.field(repr=False)
    salt: bytes = attrs.field(repr=False)
    role: str = "owner"
    is_admin: bool = False


@attrs.define
class ApiKey:
    id: str
    team_id: str
    name: str
    prefix: str
    digest: bytes = attrs.field(repr=False)
    created_by: str | None
    created_at: dt.datetime
    last_used: dt.datetime | None = None

    def to_json(self, creator_email: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "key_prefix": self.prefix,
            "created_by": self.created_by,
            "created_at": rfc3339(self.created_at),
        }
        if creator_email:
            out["creator_email"] = creator_email
        if self.last_used:
            out["last_used"] = rfc3339(self.last_used)
        return out


@attrs.frozen
class Principal:
    """Who is calling: a team, and the user when the credential was a JWT."""

    team_id: str
    kind: str  # "api_key" or "user"
    actor_id: str
    user: User | None = None


class Accounts:
    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._signup_lock = threading.Lock()
        self.users: dict[str, User] = {}
        self.by_email: dict[str, User] = {}
        self.keys: dict[str, ApiKey] = {}
        self._by_digest: dict[bytes, ApiKey] = {}
        self.default_team = new_id("team")

    # -- persistence (``_persist.py``)

    def saved(self) -> tuple[bytes, str, list[User], list[ApiKey]]:
        """What a restart must keep: the JWT secret, the default team, users, keys."""
        return self._secret, self.default_team, list(self.users.values()), list(self.keys.values())

    def restore(
        self, *, secret: bytes, default_team: str, users: list[User], keys: list[ApiKey]
    ) -> None:
        """Take back what :meth:`saved` gave (on a fresh instance, before any key)."""
        self._secret = secret
        self.default_team = default_team
        for user in users:
            self.users[user.id] = user
            self.by_email[user.email.lower()] = user
        for key in keys:
            self.keys[key.id] = key
            self._by_digest[key.digest] = key

    # -- API keys

    def add_key(self, raw: str, team_id: str, name: str, created_by: str | None) -> ApiKey:
        key = ApiKey(
            id=new_id("key"),
            team_id=team_id,
            name=name,
            prefix=raw[:10],
            digest=hashlib.sha256(raw.encode()).digest(),
            created_by=created_by,
            created_at=now_utc(),
        )
        self.keys[key.id] = key
        self._by_digest[key.digest] = key
        return key

    @staticmethod
    def generate_key() -> str:
        return "wrn_" + secrets.token_hex(16)

    def check_key(self, raw: str) -> ApiKey | None:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).digest()
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        found.last_used = now_utc()
        return found

    def delete_key(self, key_id: str, team_id: str) -> None:
        key = self.keys.get(key_id)
        if key is not None and key.team_id == team_id:
            del self.keys[key_id]
            self._by_digest.pop(key.digest, None)

    # -- users

    def _hash(self, password: str, salt: bytes) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)

    def signup(self, email: str, password: str, name: str) -> User:
        """Create a user. Slow (PBKDF2): call it from a worker thread; thread-safe."""
        if email.lower() in self.by_email:
            raise ApiError(409, "email_taken", "an account with this email already exists")
        salt = secrets.token_bytes(16)
        user = User(
            id=new_id("usr"),
            email=email,
            name=name,
            team_id=new_id("team"),
            password_hash=self._hash(password, salt),
            salt=salt,
        )
        with self._signup_lock:  # two sign-ups with one address: one wins
            if email.lower() in self.by_email:
                raise ApiError(409, "email_taken", "an account with this email already exists")
            self.users[user.id] = user
            self.by_email[email.lower()] = user
        return user

    def login(self, email: str, password: str) -> User:
        """The user with these credentials. Slow (PBKDF2): call it from a worker thread."""
        user = self.by_email.get(email.lower())
        if user is None:
            self._hash(password, b"\0" * 16)  # same cost whether or not the user exists
            raise ApiError(401, "unauthorized", "invalid email or password")
        if not hmac.compare_digest(self._hash(password, user.salt), user.password_hash):
            raise ApiError(401, "unauthorized", "invalid email or password")
        return user

    # -- JWT (HS256)

    def issue_jwt(self, user: User) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "sub": user.id,
            "team_id": user.team_id,
            "role": user.role,
            "email": user.email,
            "name": user.name,
            "is_admin": user.is_admin,
            "iat": now,
            "exp": now + JWT_LIFETIME,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = hmac.new(self._secret, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}"

    def check_jwt(self, token: str) -> User:
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            expected = hmac.new(
                self._secret, f"{head_b64}.{claims_b64}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(expected, _unb64(sig_b64)):
                raise ValueError("bad signature")
            header = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(claims_b64))
            if header.get("alg") != "HS256" or claims.get("typ") == "host":
                raise ValueError("unsupported token")
            if int(claims["exp"]) < time.time():
                raise ValueError("expired")
        except (ValueError, KeyError, TypeError, json.JSONDecodeError, binascii.Error):
            raise ApiError(401, "unauthorized", "invalid or expired token") from None
        sub = str(claims.get("sub", ""))
        if not is_valid("usr", sub):
            raise ApiError(401, "unauthorized", "invalid user ID in token")
        user = self.users.get(sub)
        if user is None:
            raise ApiError(401, "unauthorized", "user not found")
        return user


class AttemptThrottle:
    """Sign-up and log-in attempts per client address: a token bucket per address.

    ``burst`` attempts at once, then one per ``interval`` seconds; :meth:`take` answers
    how long to wait (0 when the attempt may go ahead). Bounded: at most ``max_clients``
    addresses are remembered; full buckets are dropped first.
    """

    def __init__(self, burst: int, interval: float, *, max_clients: int = 10_000) -> None:
        self.burst = max(burst, 1)
        self.interval = max(interval, 1e-3)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) / self.interval)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) * self.interval
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > self.max_clients:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        for key, (tokens, stamp) in list(self._buckets.items()):
            if tokens + (now - stamp) / self.interval >= self.burst:
                del self._buckets[key]
        while len(self._buckets) > self.max_clients:  # all busy: forget the oldest
            del self._buckets[next(iter(self._buckets))]
