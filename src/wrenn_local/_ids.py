"""Entity IDs: prefix + a UUIDv4 in base36, left-padded to 25 characters (PROTOCOL §4)."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Final

__all__ = ["ALPHABET", "is_valid", "new_id", "new_tag"]

ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_BODY: Final = re.compile(r"^[0-9a-z]{25}$")


def _base36(value: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(25, "0")


def new_id(prefix: str) -> str:
    """A fresh ID such as ``cl-8nxizn9ygtczplsnn9jve38be``."""
    return f"{prefix}-{_base36(uuid.uuid4().int)}"


def is_valid(prefix: str, value: str) -> bool:
    head = prefix + "-"
    return value.startswith(head) and bool(_BODY.match(value[len(head) :]))


def new_tag(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
