"""The one seam where foreign transport exceptions become :class:`~wrenn.WrennError`.

httpx2, anyio streams, ssl and the operating system each raise their own exceptions;
every call into them sits inside :func:`map_transport_errors`, which raises the SDK's
class for the failure, with the original chained as ``__cause__``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx2 as httpx

from .._exceptions import (
    WrennConnectionError,
    WrennError,
    WrennProtocolError,
    WrennTimeoutError,
    WrennTransportError,
)

__all__ = ["map_transport_errors", "not_sent"]


@contextmanager
def map_transport_errors(context: str, *, server: str = "") -> Iterator[None]:
    """Convert foreign transport exceptions into :class:`WrennError` subclasses, chained.

    ``server`` names what was being reached and where its address came from (see
    ``ClientConfig.describe_server``); the message says what failed in our words, and
    the foreign exception stays reachable as ``__cause__``."""
    to = f" to {server}" if server else ""
    try:
        yield
    except WrennError:
        raise
    except httpx.TimeoutException as exc:
        raise WrennTimeoutError(f"{_phase(exc)}{to} timed out ({context})") from exc
    except httpx.ConnectError as exc:
        raise WrennConnectionError(f"cannot connect{to}: {_reason(exc)} ({context})") from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise WrennConnectionError(f"the connection{to} broke: {_reason(exc)} ({context})") from exc
    except httpx.ProtocolError as exc:
        raise WrennProtocolError(f"HTTP protocol error{to}: {_reason(exc)} ({context})") from exc
    except httpx.HTTPError as exc:
        raise WrennTransportError(f"request{to} failed: {_reason(exc)} ({context})") from exc
    except ssl.SSLError as exc:
        raise WrennConnectionError(f"TLS failure{to}: {exc.reason or exc} ({context})") from exc
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
        raise WrennConnectionError(f"the connection{to} broke ({context})") from exc
    except OSError as exc:
        raise WrennConnectionError(f"cannot connect{to}: {_reason(exc)} ({context})") from exc


def _phase(exc: Exception) -> str:
    return {
        "ConnectTimeout": "connecting",
        "ReadTimeout": "reading the answer",
        "WriteTimeout": "sending the request",
        "PoolTimeout": "waiting for a free connection",
    }.get(type(exc).__name__, "the request")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of groups among them."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, BaseExceptionGroup):
            todo.extend(item.exceptions)
        todo.extend(e for e in (item.__cause__, item.__context__) if e is not None)


def _reason(exc: Exception) -> str:
    """What went wrong, in our words, from the most telling exception down the chain
    (transports wrap the operating system's error in one or two of their own)."""
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, socket.gaierror):
            return "its host name does not resolve"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused (is the server running on that port?)"
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS failure: {item.verify_message or item.reason or 'certificate not trusted'}"
        if isinstance(item, ssl.SSLError):
            return f"TLS failure: {item.reason or item}"
        if isinstance(item, ConnectionResetError):
            return "the server reset the connection"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without a complete answer"
    for item in chain:
        if isinstance(item, OSError) and item.strerror:
            return item.strerror[:1].lower() + item.strerror[1:]
    for item in chain:
        text = str(item)
        if text:
            return text
    return "no further detail"


def not_sent(exc: Exception) -> bool:
    """True when the request body cannot have reached the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
