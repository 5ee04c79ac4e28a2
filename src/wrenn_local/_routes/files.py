"""File routes (PROTOCOL §10): multipart and streaming write, read, list, mkdir, remove.

Uploads are parsed as they arrive and forwarded to the capsule agent in chunks, so the
server's memory stays constant whatever the size. The ``path`` field may come before or
after the ``file`` part; when it comes after, the file data waits in a temporary file on
the host, at most :data:`SPOOL_LIMIT` of it (413 past that), streamed upload or not.
Every path is resolved by the agent inside the capsule, never on the host.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Final

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._agent_client import FileDownload, FileUpload
from .._capsules import CapsuleRecord
from .._errors import ApiError, bad_request, json_response
from ._http import capsules_of, endpoint, principal_of, read_json

__all__ = ["routes"]

WRITE_LIMIT: Final = 100 * 1024 * 1024
# File data that came before the ``path`` field waits on the host's disk, outside any
# capsule's disk limit: at most this much (a streamed upload has no limit of its own).
SPOOL_LIMIT: Final = WRITE_LIMIT


class _Upload:
    """Collects multipart events: the ``path`` field's text, and ``file`` chunks."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.saw_file = False
        self.file_done = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = b""
        self._value = b""
        self._current: str | None = None
        self._text = bytearray()
        self.pending: list[bytes] = []
        self.file: FileUpload | None = None

    def callbacks(self) -> dict[str, Any]:
        def on_part_begin() -> None:
            self._headers = []
            self._current = None
            self._text = bytearray()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def on_header_end() -> None:
            self._headers.append((self._field.lower(), self._value))
            self._field = b""
            self._value = b""

        def on_headers_finished() -> None:
            for name, value in self._headers:
                if name == b"content-disposition":
                    _, params = parse_options_header(value)
                    self._current = params.get(b"name", b"").decode("utf-8", "replace")
            if self._current == "file":
                self.saw_file = True

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if self._current == "file":
                self.pending.append(bytes(data[start:end]))
            elif self._current == "path":
                self._text += data[start:end]
                if len(self._text) > 4096:
                    raise ValueError("path field too long")

        def on_part_end() -> None:
            if self._current == "path":
                self.path = self._text.decode("utf-8", "replace")
            elif self._current == "file":
                self.file_done = True

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise bad_request("expected multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise bad_request("expected multipart/form-data with boundary")
    return boundary


async def _upload(request: Request, record: CapsuleRecord, *, limit: int | None) -> None:
    declared = request.headers.get("content-length")
    if limit is not None and declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", "file exceeds 100 MB limit")
    upload = _Upload()
    parser = MultipartParser(_boundary(request), upload.callbacks())  # type: ignore[arg-type]
    # File data seen before the `path` field waits here; closed in the `finally` below.
    spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                file = await _pump_upload(request, record, upload, parser, spool, stack, limit)
            except BaseException:
                if upload.file is not None:  # the agent drops the partial file; wait for it
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await upload.file.abort()
                raise
            await file.finish()
    finally:
        spool.close()
    record.touch()


async def _pump_upload(
    request: Request,
    record: CapsuleRecord,
    upload: _Upload,
    parser: MultipartParser,
    spool: Any,
    stack: contextlib.AsyncExitStack,
    limit: int | None,
) -> FileUpload:
    assert record.sandbox is not None
    received = spooled = 0
    chunks = await stack.enter_async_context(contextlib.aclosing(request.stream()))
    async for chunk in chunks:
        received += len(chunk)
        if limit is not None and received > limit:
            raise ApiError(413, "too_large", "file exceeds 100 MB limit")
        try:
            parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own error types
            raise bad_request("failed to parse multipart") from exc
        if upload.file is None and upload.path is not None:
            if not upload.path:
                raise bad_request("path field is required")
            upload.file = await stack.enter_async_context(
                record.sandbox.agent.write_file(upload.path)
            )
            spool.seek(0)
            while data := spool.read(64 * 1024):
                await upload.file.send(data)
        if upload.pending:
            pending, upload.pending = upload.pending, []
            for data in pending:
                if upload.file is None:
                    spooled += len(data)
                    if spooled > SPOOL_LIMIT:
                        raise ApiError(
                            413,
                            "too_large",
                            "more than 100 MB of file data came before the path field: "
                            "send the path field first",
                        )
                    spool.write(data)
                else:
                    await upload.file.send(data)
    try:
        parser.finalize()
    except Exception as exc:
        raise bad_request("failed to parse multipart") from exc
    if not upload.path:
        raise bad_request("path field is required")
    if not upload.saw_file:
        raise bad_request("file field is required")
    assert upload.file is not None
    return upload.file


async def _write(request: Request, limit: int | None) -> Response:
    # A refusal before the body is read whole is drained and closed by ``endpoint``.
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
    await _upload(request, record, limit=limit)
    return Response(status_code=204)


@endpoint("key_or_jwt")
async def write(request: Request) -> Response:
    return await _write(request, WRITE_LIMIT)


@endpoint("key_or_jwt")
async def stream_write(request: Request) -> Response:
    return await _write(request, None)


async def _target(request: Request) -> tuple[CapsuleRecord, str, dict[str, Any]]:
    """The running capsule of the request and the ``path`` its JSON body names."""
    record = capsules_of(request).running(principal_of(request), request.path_params["id"])
    body = await read_json(request)
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise bad_request("path is required")
    assert record.sandbox is not None
    return record, path, body


async def _read(request: Request) -> Response:
    record, path, _ = await _target(request)
    assert record.sandbox is not None
    opened = record.sandbox.agent.read_file(path)
    # the agent's answer or its error comes here, before any byte is sent
    download = await opened.__aenter__()
    return _AgentFileResponse(opened, download)


class _AgentFileResponse(StreamingResponse):
    """A file streamed from the capsule agent to the client.

    Not an async generator on purpose: the agent connection is closed in this task's
    ``finally``, at once, whether the body ends, breaks off or the client disconnects
    (a generator abandoned on disconnect would be left to the garbage collector).
    """

    def __init__(
        self, opened: contextlib.AbstractAsyncContextManager[Any], download: FileDownload
    ) -> None:
        super().__init__(iter(()), media_type="application/octet-stream")
        self._opened = opened
        self._download = download

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def until_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(until_disconnect)
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                while True:
                    chunk = await self._download.next()
                    if chunk is None:  # the agent broke off: end without the final chunk,
                        break  # so the client sees a truncated body, never a short file
                    if not chunk:
                        await send({"type": "http.response.body", "body": b""})
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._opened.__aexit__(None, None, None)


@endpoint("key_or_jwt")
async def read(request: Request) -> Response:
    return await _read(request)


@endpoint("key_or_jwt")
async def stream_read(request: Request) -> Response:
    return await _read(request)


@endpoint("key_or_jwt")
async def list_dir(request: Request) -> Response:
    record, path, body = await _target(request)
    depth = body.get("depth")
    depth = 1 if depth is None else depth
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 64:
        raise bad_request("depth must be an integer from 0 to 64")
    assert record.sandbox is not None
    return json_response({"entries": await record.sandbox.agent.list_dir(path, depth)})


@endpoint("key_or_jwt")
async def mkdir(request: Request) -> Response:
    record, path, _ = await _target(request)
    assert record.sandbox is not None
    return json_response({"entry": await record.sandbox.agent.mkdir(path)})


@endpoint("key_or_jwt")
async def remove(request: Request) -> Response:
    record, path, _ = await _target(request)
    assert record.sandbox is not None
    await record.sandbox.agent.remove(path)
    return Response(status_code=204)


def routes() -> list[Route]:
    base = "/v1/capsules/{id}/files"
    return [
        Route(f"{base}/write", write, methods=["POST"]),
        Route(f"{base}/read", read, methods=["POST"]),
        Route(f"{base}/stream/write", stream_write, methods=["POST"]),
        Route(f"{base}/stream/read", stream_read, methods=["POST"]),
        Route(f"{base}/list", list_dir, methods=["POST"]),
        Route(f"{base}/mkdir", mkdir, methods=["POST"]),
        Route(f"{base}/remove", remove, methods=["POST"]),
    ]
