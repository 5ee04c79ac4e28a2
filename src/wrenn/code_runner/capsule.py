"""``wrenn.code_runner.Capsule``: a sync capsule with code-runner defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self, final

from .._code import DEFAULT_KERNEL, DEFAULT_TEMPLATE
from .._models.code import Execution, ExecutionError, Result
from .._sync.client import Capsule as _BaseCapsule
from .._sync.portal import Backend

__all__ = ["BaseCapsule", "Capsule", "Execution", "ExecutionError", "Result"]

BaseCapsule = _BaseCapsule  # the official module's name for wrenn.Capsule


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

    @classmethod
    def create(
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
        backend: Backend = "asyncio",
    ) -> Self:
        """The same as ``Capsule(...)`` (the official SDK's other spelling)."""
        return cls(
            template,
            vcpus,
            memory_mb,
            timeout,
            kernel=kernel,
            wait=wait,
            api_key=api_key,
            base_url=base_url,
            metadata=metadata,
            backend=backend,
        )

    def close(self) -> None:
        """Close the kernel connections (official SDK); the capsule stays usable and its
        client open (``with Capsule(...)`` or :meth:`destroy` end those)."""
        self._code.close()

    @property
    def _kernel_name(self) -> str:
        # read by code written against the official SDK's internals
        return self._async.code.kernel_name

    @property
    def _kernel_id(self) -> str | None:
        return self._async.code.kernel_id
