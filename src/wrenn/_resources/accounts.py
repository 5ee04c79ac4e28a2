"""``client.auth`` (signup, login) and ``client.api_keys`` (create, list, delete).

Passwords and keys are sent in request bodies only; they never appear in reprs, logs or
error messages.
"""

from __future__ import annotations

from typing import Any, final

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import WrennValidationError
from .._models import APIKey, Session, SignupResult
from .._transport.http import HTTPTransport, api_path, response_json
from .converter import structure, structure_list

__all__ = ["AsyncAPIKeys", "AsyncAuth"]


@final
class AsyncAuth:
    """Account calls that need no credential. Reached as ``client.auth``."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def signup(
        self, email: str, password: str, name: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> SignupResult:
        """``POST /v1/auth/signup``. The account may need activation before login."""
        if "@" not in email or len(email) < 3:
            raise WrennValidationError("email must look like an e-mail address")
        if len(password) < 8:
            raise WrennValidationError("password must be at least 8 characters")
        if not 1 <= len(name) <= 100:
            raise WrennValidationError("name must be 1 to 100 characters")
        resp = await self._http.request(
            "POST",
            api_path("auth", "signup"),
            json_body={"email": email, "password": password, "name": name},
            auth="none",
            timeout=timeout,
        )
        data: Any = response_json(resp, what="signup")
        return structure(data if isinstance(data, dict) else {}, SignupResult)

    async def login(
        self, email: str, password: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> Session:
        """``POST /v1/auth/login``. ``Session.token`` is the JWT (pass it as ``token=``)."""
        resp = await self._http.request(
            "POST",
            api_path("auth", "login"),
            json_body={"email": email, "password": password},
            auth="none",
            timeout=timeout,
        )
        return structure(response_json(resp, what="login"), Session)


@final
class AsyncAPIKeys:
    """API-key calls; they need a user token (``token=`` / ``WRENN_TOKEN``)."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def create(self, name: str | None = None, *, timeout: Timeout = CLIENT_DEFAULT) -> APIKey:
        """``POST /v1/api-keys``. The returned ``APIKey.key`` is the only time the secret is
        shown; store it safely."""
        body = {"name": name} if name is not None else {}
        resp = await self._http.request(
            "POST", api_path("api-keys"), json_body=body, auth="bearer", timeout=timeout
        )
        return structure(response_json(resp, what="API key create"), APIKey)

    async def list(self, *, timeout: Timeout = CLIENT_DEFAULT) -> list[APIKey]:
        """``GET /v1/api-keys`` (without the secrets)."""
        resp = await self._http.request("GET", api_path("api-keys"), auth="bearer", timeout=timeout)
        return structure_list(response_json(resp, what="API key list"), APIKey)

    async def delete(self, key_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> None:
        """``DELETE /v1/api-keys/{id}``."""
        await self._http.request(
            "DELETE", api_path("api-keys", key_id), auth="bearer", timeout=timeout
        )
