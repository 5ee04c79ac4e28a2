"""The one seam where foreign transport exceptions become :class:`~wrenn.WrennError`.

httpx2, anyio streams, ssl and the operating system each raise their own exceptions;
every call into them sits inside :func:`map_transport_errors`, which raises the SDK's
class for the failure, with the original chained as ``__cause__``.
"""

from __future__ import annotations

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
def map_transport_errors(context: str) -> Iterator[None]:
    """Convert foreign transport exceptions into :class:`WrennError` subclasses, chained."""
    try:
        yield
    except WrennError:
        raise
    except httpx.TimeoutException as exc:
        raise WrennTimeoutError(f"{_phase(exc)} timed out ({context})") from exc
    except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise WrennConnectionError(f"{_describe(exc)} ({context})") from exc
    except httpx.ProtocolError as exc:
        raise WrennProtocolError(f"HTTP protocol error: {_describe(exc)} ({context})") from exc
    except httpx.HTTPError as exc:
        raise WrennTransportError(f"{_describe(exc)} ({context})") from exc
    except ssl.SSLError as exc:
        raise WrennConnectionError(f"TLS failure: {exc.reason or exc} ({context})") from exc
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
        raise WrennConnectionError(f"connection broke ({context})") from exc
    except OSError as exc:
        raise WrennConnectionError(f"{exc.strerror or exc} ({context})") from exc


def _phase(exc: Exception) -> str:
    return {
        "ConnectTimeout": "connecting",
        "ReadTimeout": "reading the answer",
        "WriteTimeout": "sending the request",
        "PoolTimeout": "waiting for a free connection",
    }.get(type(exc).__name__, "the request")


def _describe(exc: Exception) -> str:
    """The exception's name and the first message found down its chain of causes (some
    transports raise an empty ConnectError whose cause says "certificate verify failed")."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        text = str(seen)
        if isinstance(seen, ssl.SSLError) and seen.reason:
            text = f"TLS failure: {text}"
        if text:
            return f"{type(exc).__name__}: {text}"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def not_sent(exc: Exception) -> bool:
    """True when the request body cannot have reached the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
