"""Transport: every byte the SDK sends or receives goes through this package.

``http`` (the only import of httpx2: auth, deadlines, retries, TLS), ``websocket``
(wsproto over anyio sockets), ``retry``, ``errors`` (the seam where foreign exceptions
become :class:`~wrenn.WrennError`), ``ports`` (a capsule port endpoint) and ``tls``.
"""
