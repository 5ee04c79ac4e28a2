"""Accounts and API keys (PROTOCOL §15.1, §15.2).

Credentials in these models (``APIKey.key``, ``Session.token``) are kept out of reprs.
"""

from __future__ import annotations

import datetime as dt

import attrs

from .base import WireModel

__all__ = ["APIKey", "Session", "SignupResult"]


@attrs.frozen
class SignupResult(WireModel):
    """Answer to a signup: the server's message (the account may need activation)."""

    message: str = ""


@attrs.frozen
class Session(WireModel):
    """A logged-in user. ``token`` is the JWT when the server returns one (else ``None``,
    and the server set a session cookie instead)."""

    user_id: str = ""
    team_id: str = ""
    email: str = ""
    name: str = ""
    role: str | None = None
    is_admin: bool = False
    token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class APIKey(WireModel):
    """An API key. ``key`` holds the secret and is only ever set on the create answer."""

    id: str
    name: str = ""
    team_id: str = ""
    key_prefix: str = ""
    created_by: str | None = None
    creator_email: str | None = None
    created_at: dt.datetime | None = None
    last_used: dt.datetime | None = None
    key: str | None = attrs.field(default=None, repr=False)
