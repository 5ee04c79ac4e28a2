"""Strings that cross the wire: each must be a ``str`` that UTF-8 can carry.

A lone surrogate (what ``os.fsdecode`` or ``surrogateescape`` makes of bytes that are
not UTF-8) cannot be encoded; without this check it fails deep inside the HTTP or JSON
layer as a ``UnicodeEncodeError``. Here it is a :class:`~wrenn.WrennValidationError`
naming the argument.
"""

from __future__ import annotations

from ._exceptions import WrennValidationError

__all__ = ["upload_chunk", "wire_text"]


def wire_text(value: object, what: str) -> str:
    """``value`` if it is a ``str`` UTF-8 can encode, else :class:`WrennValidationError`
    saying what ``what`` must be."""
    if not isinstance(value, str):
        raise WrennValidationError(f"{what} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WrennValidationError(
            f"{what} holds {value[exc.start : exc.end]!a} at index {exc.start}, which is not"
            " text UTF-8 can carry (a lone surrogate, as os.fsdecode makes of undecodable"
            " bytes): pass it as real text"
        ) from None
    return value


def upload_chunk(chunk: object) -> bytes | bytearray | memoryview:
    """One chunk of a streamed upload: bytes-like as it is, a ``str`` as its UTF-8 (as
    the official SDK's ``upload_stream`` takes it); anything else raises
    :class:`WrennValidationError`."""
    if isinstance(chunk, bytes | bytearray | memoryview):
        return chunk
    if isinstance(chunk, str):
        return wire_text(chunk, "an upload chunk").encode("utf-8")
    raise WrennValidationError(f"upload chunks must be bytes or str, not {type(chunk).__name__}")
