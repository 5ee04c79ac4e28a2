"""The JSON error envelope of PROTOCOL §3.1 and the server's one exception type."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

__all__ = ["ApiError", "error_response", "json_response"]


class ApiError(Exception):
    """An error answer: ``{"error": {"code": ..., "message": ...}}`` with a status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON ending with a newline, as the Go server's encoder writes it."""
    return Response(
        json.dumps(body, separators=(",", ":")) + "\n",
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(exc: ApiError) -> Response:
    return json_response(
        {"error": {"code": exc.code, "message": exc.message, **exc.extra}}, exc.status
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def not_found(message: str = "capsule not found") -> ApiError:
    return ApiError(404, "not_found", message)
