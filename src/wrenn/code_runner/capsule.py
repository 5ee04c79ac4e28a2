"""``wrenn.code_runner.Capsule``: a sync capsule with code-runner defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

from .._code import DEFAULT_KERNEL, DEFAULT_TEMPLATE
from .._sync.client import Capsule as _BaseCapsule
from .._sync.portal import Backend

__all__ = ["Capsule"]


@final
class Capsule(_BaseCapsule):
    """:class:`wrenn.Capsule` made from the ``code-runner-beta`` template by default, whose
    ``run_code`` uses the ``kernel`` kernelspec (``wrenn``)."""

    def __init__(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        kernel: str | None = None,
        wait: bool = False,
        api_key: str | None = None,
        base_url: str | None = None,
        metadata: Mapping[str, str] | None = None,
        backend: Backend = "asyncio",
    ) -> None:
        super().__init__(
            template or DEFAULT_TEMPLATE,
            vcpus,
            memory_mb,
            timeout,
            wait=wait,
            api_key=api_key,
            base_url=base_url,
            metadata=metadata,
            backend=backend,
        )
        if kernel is not None and kernel != DEFAULT_KERNEL:
            self.use_kernel(kernel)
