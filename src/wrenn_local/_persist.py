"""What outlives a server started with ``--data-dir``: accounts and snapshots.

``state.json`` in the data directory (mode 0600, replaced atomically) holds the
accounts (the JWT secret, the default team, users with their PBKDF2 hashes, the API keys
users created, as SHA-256 digests) and every ready snapshot template (its layers named
relative to the data directory). The server writes it within a second of a change and
when it stops, so a SIGKILL loses at most the last second. The server's own key is not
kept: it is given again (``--api-key-file``, ``WRENN_LOCAL_API_KEY``) or made anew at
each start, and always belongs to the default team, which does persist, so the
snapshots the default team made are still its own.

Snapshot layers found under ``templates/`` that no kept template names (a snapshot
interrupted by a kill) are removed at start. Capsules are not kept: a killed server's
capsules are reaped (``_leftovers.py``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Final

import anyio

from ._accounts import Accounts, ApiKey, User
from ._templates import TemplateRecord, TemplateStore

__all__ = ["keep_saved", "read_state", "restore_accounts", "restore_templates", "save_state"]

log = logging.getLogger("wrenn_local")

STATE_FILE: Final = "state.json"
VERSION: Final = 1


def _b(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb(text: str) -> bytes:
    return base64.b64decode(text)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The saved state, or ``None`` (none yet, or unreadable: then it is logged)."""
    path = data_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        log.warning("ignoring %s: unknown format", path)
        return None
    return raw


def restore_accounts(accounts: Accounts, state: dict[str, Any] | None) -> None:
    """Bring back the accounts (before the server's own key is added)."""
    if not state:
        return
    saved = state.get("accounts", {})
    accounts.restore(
        secret=_unb(saved["secret"]),
        default_team=saved["default_team"],
        users=[
            User(
                id=u["id"],
                email=u["email"],
                name=u["name"],
                team_id=u["team_id"],
                password_hash=_unb(u["password_hash"]),
                salt=_unb(u["salt"]),
                role=u.get("role", "owner"),
                is_admin=bool(u.get("is_admin")),
            )
            for u in saved.get("users", [])
        ],
        keys=[
            ApiKey(
                id=k["id"],
                team_id=k["team_id"],
                name=k["name"],
                prefix=k["prefix"],
                digest=_unb(k["digest"]),
                created_by=k["created_by"],
                created_at=dt.datetime.fromisoformat(k["created_at"]),
            )
            for k in saved.get("keys", [])
        ],
    )


def restore_templates(store: TemplateStore, state: dict[str, Any] | None, data_dir: Path) -> None:
    """Bring back the snapshots whose layers are all still there; remove orphan layers."""
    kept: set[Path] = set()
    for t in (state or {}).get("templates", []):
        layers = [data_dir / p for p in t["layers"]]
        if not all(layer.is_dir() for layer in layers):
            continue
        store.restore(
            TemplateRecord(
                name=t["name"],
                type="snapshot",
                team_id=t["team_id"],
                created_at=dt.datetime.fromisoformat(t["created_at"]),
                layers=layers,
                vcpus=t.get("vcpus"),
                memory_mb=t.get("memory_mb"),
                size_bytes=int(t.get("size_bytes", 0)),
                metadata=dict(t.get("metadata", {})),
                services=tuple(t.get("services", ())),
            )
        )
        kept.update(layers)
    layers_dir = data_dir / "templates"
    if layers_dir.is_dir():
        for layer in layers_dir.iterdir():
            if layer not in kept:
                shutil.rmtree(layer, ignore_errors=True)


def _state(accounts: Accounts, store: TemplateStore, data_dir: Path) -> dict[str, Any]:
    secret, default_team, users, keys = accounts.saved()
    return {
        "version": VERSION,
        "accounts": {
            "secret": _b(secret),
            "default_team": default_team,
            "users": [
                {
                    "id": u.id,
                    "email": u.email,
                    "name": u.name,
                    "team_id": u.team_id,
                    "password_hash": _b(u.password_hash),
                    "salt": _b(u.salt),
                    "role": u.role,
                    "is_admin": u.is_admin,
                }
                for u in users
            ],
            "keys": [
                {
                    "id": k.id,
                    "team_id": k.team_id,
                    "name": k.name,
                    "prefix": k.prefix,
                    "digest": _b(k.digest),
                    "created_by": k.created_by,
                    "created_at": k.created_at.isoformat(),
                }
                for k in keys
                if k.created_by is not None  # the server's own key is given at each start
            ],
        },
        "templates": [
            {
                "name": t.name,
                "team_id": t.team_id,
                "created_at": t.created_at.isoformat(),
                "layers": [str(p.relative_to(data_dir)) for p in t.layers],
                "vcpus": t.vcpus,
                "memory_mb": t.memory_mb,
                "size_bytes": t.size_bytes,
                "metadata": t.metadata,
                "services": list(t.services),
            }
            for t in store.snapshots()
        ],
    }


def save_state(accounts: Accounts, store: TemplateStore, data_dir: Path) -> bytes:
    """Write the state (0600, atomically); returns what was written."""
    data = json.dumps(_state(accounts, store, data_dir), sort_keys=True).encode()
    _write(data_dir, data)
    return data


def _write(data_dir: Path, data: bytes) -> None:
    temporary = data_dir / (STATE_FILE + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, data_dir / STATE_FILE)


async def keep_saved(
    accounts: Accounts, store: TemplateStore, data_dir: Path, *, interval: float = 1.0
) -> None:
    """Write the state whenever it changed (checked every ``interval`` seconds), and
    once more when cancelled (the server stops)."""
    written = b""
    try:
        while True:
            data = json.dumps(_state(accounts, store, data_dir), sort_keys=True).encode()
            if data != written:
                await anyio.to_thread.run_sync(_write, data_dir, data)
                written = data
            await anyio.sleep(interval)
    finally:
        with contextlib.suppress(OSError):  # quick (a small file), not worth a thread
            save_state(accounts, store, data_dir)
