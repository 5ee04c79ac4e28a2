"""``wrenn.code_runner.AsyncCapsule``: an async capsule with code-runner defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

from .._capsule import AsyncCapsule as _BaseAsyncCapsule
from .._client import AsyncWrennClient
from .._code import DEFAULT_KERNEL, DEFAULT_TEMPLATE
from .._models.code import Execution, ExecutionError, Result

__all__ = [
    "AsyncCapsule",
    "AsyncWrennClient",
    "BaseAsyncCapsule",
    "Execution",
    "ExecutionError",
    "Result",
]

BaseAsyncCapsule = _BaseAsyncCapsule  # the official module's name for wrenn.AsyncCapsule


@final
class AsyncCapsule(_BaseAsyncCapsule):
    """:class:`wrenn.AsyncCapsule` whose ``create`` defaults to the ``code-runner-beta``
    template and whose ``run_code`` uses the ``kernel`` kernelspec (``wrenn``)."""

    @classmethod
    async def create(
        cls,
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
    ) -> AsyncCapsule:
        """Create a code-runner capsule with a client of its own; see
        :meth:`wrenn.AsyncCapsule.create` (``async with await AsyncCapsule.create()``)."""
        capsule = await super().create(
            template or DEFAULT_TEMPLATE,
            vcpus,
            memory_mb,
            timeout,
            wait=wait,
            api_key=api_key,
            base_url=base_url,
            metadata=metadata,
        )
        if kernel is not None and kernel != DEFAULT_KERNEL:
            capsule.use_kernel(kernel)
        return capsule

    async def close(self) -> None:
        """Close the kernel connections (official SDK); the capsule stays usable."""
        await self.code.close()

    @property
    def _kernel_name(self) -> str:
        # read by code written against the official SDK's internals
        return self.code.kernel_name

    @property
    def _kernel_id(self) -> str | None:
        return self.code.kernel_id
