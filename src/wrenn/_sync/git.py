"""``capsule.git`` for synchronous code."""

from __future__ import annotations

from typing import final

from .._git import AsyncGit
from .adapt import Facet, blocking

__all__ = ["Git"]


@final
class Git(Facet[AsyncGit]):
    """``capsule.git`` for synchronous code: the methods of :class:`wrenn.AsyncGit` with the
    same arguments, results and errors; credentials are handled the same way (never on
    the command line, never stored in the repository)."""

    __slots__ = ()
    clone = blocking(AsyncGit.clone)
    init = blocking(AsyncGit.init)
    status = blocking(AsyncGit.status)
    add = blocking(AsyncGit.add)
    commit = blocking(AsyncGit.commit)
    branches = blocking(AsyncGit.branches)
    create_branch = blocking(AsyncGit.create_branch)
    checkout_branch = blocking(AsyncGit.checkout_branch)
    delete_branch = blocking(AsyncGit.delete_branch)
    push = blocking(AsyncGit.push)
    pull = blocking(AsyncGit.pull)
    remote_add = blocking(AsyncGit.remote_add)
    remote_get = blocking(AsyncGit.remote_get)
    set_config = blocking(AsyncGit.set_config)
    get_config = blocking(AsyncGit.get_config)
    configure_user = blocking(AsyncGit.configure_user)
    reset = blocking(AsyncGit.reset)
    restore = blocking(AsyncGit.restore)
    dangerously_authenticate = blocking(AsyncGit.dangerously_authenticate)
