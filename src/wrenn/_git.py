"""``capsule.git``: the git binary in a capsule, with credentials kept off command lines.

Every operation runs ``git`` directly (no shell) through ``capsule.commands``. When a
username and password are given they travel only in environment variables of that one
command, read by a throw-away ``GIT_ASKPASS`` script (mode 0700, removed afterwards): they
never appear in a command line, in ``ps``, in the remote URL or in ``.git/config``.
``GIT_TERMINAL_PROMPT=0`` makes a missing credential fail fast instead of waiting.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal, final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import attrs

from ._exceptions import GitAuthError as GitAuthError
from ._exceptions import GitCommandError as GitCommandError
from ._exceptions import GitError as GitError
from ._exceptions import WrennError, WrennValidationError
from ._models import CommandResult
from ._models.base import DataclassShaped, dataclass_view

if TYPE_CHECKING:
    from ._commands import AsyncCommands
    from ._files import AsyncCapsuleFiles

# the official SDK's private wrenn._git also names the git errors; they live in the one
# exception tree and are re-exported here for code that imports them from there
__all__ = [
    "AsyncGit",
    "FileStatus",
    "GitAuthError",
    "GitBranch",
    "GitCommandError",
    "GitError",
    "GitStatus",
]

AUTH_PHRASES: Final = (
    "authentication failed",
    "terminal prompts disabled",
    "could not read username",
    "could not read password",
    "invalid username or password",
    "access denied",
    "permission denied",
    "not authorized",
    "http basic: access denied",
)
ASKPASS: Final = (
    '#!/bin/sh\ncase "$1" in *sername*) printf %s "$WRENN_GIT_USERNAME";; '
    '*) printf %s "$WRENN_GIT_PASSWORD";; esac\n'
)


def _detail(result: CommandResult) -> str:
    """What git said about a failure: its stderr or, when that is empty, its stdout (as
    the official SDK's message: ``git commit`` with nothing to commit says so on stdout)."""
    return (result.stderr.strip() or result.stdout.strip())[-300:]


@dataclass_view()
@attrs.frozen
class FileStatus(DataclassShaped):
    path: str
    index_status: str
    work_tree_status: str
    renamed_from: str | None = None

    @property
    def staged(self) -> bool:
        return self.index_status not in (" ", "?", "!")

    @property
    def status(self) -> str:
        codes = self.index_status + self.work_tree_status
        if "U" in codes or codes in ("AA", "DD"):
            return "conflict"
        if codes == "??":
            return "untracked"
        for letter, name in (
            ("R", "renamed"),
            ("C", "copied"),
            ("D", "deleted"),
            ("A", "added"),
            ("M", "modified"),
            ("T", "typechange"),
        ):
            if letter in codes:
                return name
        return "unknown"


@dataclass_view()
@attrs.frozen
class GitStatus(DataclassShaped):
    branch: str | None = None
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    detached: bool = False
    files: builtins.list[FileStatus] = attrs.field(factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.files

    @property
    def has_staged(self) -> bool:
        return any(f.staged for f in self.files)

    @property
    def has_untracked(self) -> bool:
        return any(f.status == "untracked" for f in self.files)

    @property
    def has_conflicts(self) -> bool:
        return any(f.status == "conflict" for f in self.files)


@dataclass_view()
@attrs.frozen
class GitBranch(DataclassShaped):
    name: str
    is_current: bool = False


def parse_status(text: str) -> GitStatus:
    """Parse ``git status --porcelain=v1 --branch``."""
    branch: str | None = None
    upstream: str | None = None
    ahead = behind = 0
    detached = False
    files: list[FileStatus] = []
    for line in text.splitlines():
        if line.startswith("## "):
            head = line[3:]
            if head.startswith("HEAD (no branch)"):
                detached = True
                continue
            if head.startswith("No commits yet on "):
                branch = head[len("No commits yet on ") :]
                continue
            tracking = ""
            if " [" in head:
                head, _, tracking = head.partition(" [")
                tracking = tracking.rstrip("]")
            branch, _, upstream_part = head.partition("...")
            upstream = upstream_part or None
            for part in tracking.split(", "):
                if part.startswith("ahead "):
                    ahead = int(part[6:])
                elif part.startswith("behind "):
                    behind = int(part[7:])
        elif len(line) > 3:
            index, work, rest = line[0], line[1], line[3:]
            renamed_from = None
            if " -> " in rest:
                renamed_from, _, rest = rest.partition(" -> ")
            files.append(
                FileStatus(
                    path=rest, index_status=index, work_tree_status=work, renamed_from=renamed_from
                )
            )
    return GitStatus(
        branch=branch, upstream=upstream, ahead=ahead, behind=behind, detached=detached, files=files
    )


@final
class AsyncGit:
    """Reached as ``capsule.git``. Every method takes ``cwd`` (the repository)."""

    def __init__(self, commands: AsyncCommands, files: AsyncCapsuleFiles) -> None:
        self._commands = commands
        self._files = files

    async def _git(
        self,
        args: Sequence[str],
        *,
        cwd: str | None = None,
        timeout: float | None = 30,
        username: str | None = None,
        password: str | None = None,
        envs: Mapping[str, str] | None = None,
    ) -> CommandResult:
        env = {"GIT_TERMINAL_PROMPT": "0", **(envs or {})}
        askpass: str | None = None
        if username is not None or password is not None:
            askpass = f"/tmp/.wrenn-askpass-{secrets.token_hex(8)}"
            await self._files.write(askpass, ASKPASS)
            await self._commands.run("chmod", args=["700", askpass])
            env.update(
                {
                    "GIT_ASKPASS": askpass,
                    "WRENN_GIT_USERNAME": username or "",
                    "WRENN_GIT_PASSWORD": password or "",
                }
            )
        try:
            result = await self._commands.run(
                "git", args=list(args), cwd=cwd, envs=env, timeout=timeout
            )
        finally:
            if askpass is not None:
                try:
                    await self._files.remove(askpass)
                except WrennError:
                    pass
        if result.exit_code != 0:
            lowered = result.stderr.lower()
            if any(p in lowered for p in AUTH_PHRASES):
                # begins with the official SDK's whole message, "git clone: authentication failed"
                raise GitAuthError(
                    f"git {args[0]}: authentication failed ({result.exit_code}): {_detail(result)}",
                    stderr=result.stderr,
                    exit_code=result.exit_code,
                )
            raise GitCommandError(
                f"git {args[0]} failed ({result.exit_code}): {_detail(result)}",
                stderr=result.stderr,
                exit_code=result.exit_code,
            )
        return result

    async def clone(
        self,
        url: str,
        dest: str | None = None,
        *,
        branch: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
        dangerously_store_credentials: bool = False,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 300,
    ) -> CommandResult:
        """``git clone``. Credentials reach git through a one-off askpass helper, never
        argv or ``.git/config`` — unless ``dangerously_store_credentials=True``, which
        writes them into the ``origin`` URL in ``.git/config`` afterwards (as the
        official SDK's option says: anyone who can read the repository can read them).

        Credentials written in an http(s) URL (``https://user:token@host/r.git``) are
        used as the official SDK uses them: the clone authenticates with them and
        ``origin`` keeps the URL as given; they too reach git by askpass, never argv.
        ``username=``/``password=`` take their place. SSH URLs (``git@host:org/r.git``)
        are passed on unchanged."""
        stored_url: str | None = None
        split = urlsplit(url)
        if split.scheme.lower() in ("http", "https") and "@" in split.netloc:
            clean = urlunsplit(split._replace(netloc=split.netloc.rpartition("@")[2]))
            if username is None and password is None:
                username = unquote(split.username or "")
                password = unquote(split.password or "")
                stored_url = url  # as the official SDK leaves it: origin is the URL given
            url = clean
        args = ["clone"]
        if branch:
            args += ["--branch", branch, "--single-branch"]
        if depth is not None:
            if depth < 1:
                raise WrennValidationError("depth must be at least 1")
            args += ["--depth", str(depth)]
        args += ["--", url] + ([dest] if dest else [])
        result = await self._git(
            args, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )
        if stored_url is not None or (dangerously_store_credentials and (username or password)):
            repo = dest or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            scheme, _, rest = url.partition("://")
            user, secret = quote(username or "", safe=""), quote(password or "", safe="")
            stored = stored_url or f"{scheme}://{user}:{secret}@{rest}"
            # through the environment, so the credentials never appear in argv
            await self._shell(
                'git -C "$WRENN_GIT_REPO" remote set-url origin "$WRENN_GIT_URL"',
                {"WRENN_GIT_REPO": repo, "WRENN_GIT_URL": stored},
                cwd=cwd,
                envs=envs,
                timeout=timeout,
            )
        return result

    async def _shell(
        self,
        script: str,
        values: Mapping[str, str],
        *,
        cwd: str | None,
        envs: Mapping[str, str] | None,
        timeout: float | None,
    ) -> CommandResult:
        """Run a fixed shell script whose variable parts travel in the environment."""
        env = {"GIT_TERMINAL_PROMPT": "0", **(envs or {}), **values}
        result = await self._commands.run(
            "/bin/sh", args=["-c", script], cwd=cwd, envs=env, timeout=timeout
        )
        if result.exit_code != 0:
            raise GitCommandError(
                f"git failed ({result.exit_code}): {_detail(result)}",
                stderr=result.stderr,
                exit_code=result.exit_code,
            )
        return result

    async def dangerously_authenticate(
        self,
        username: str,
        password: str,
        host: str = "github.com",
        protocol: str = "https",
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> None:
        """Store credentials for ``host`` in git's plaintext credential store
        (``credential.helper=store``, global), as the official SDK does: every later git
        command in the capsule uses them, and anyone who can read the home directory can
        read them. Prefer ``username=``/``password=`` on each call. The credentials
        travel in the environment, never in argv."""
        await self.set_config(
            "credential.helper", "store", scope="global", cwd=cwd, envs=envs, timeout=timeout
        )
        await self._shell(
            'printf "protocol=%s\\nhost=%s\\nusername=%s\\npassword=%s\\n\\n" '
            '"$WRENN_GIT_PROTOCOL" "$WRENN_GIT_HOST" "$WRENN_GIT_USERNAME" "$WRENN_GIT_PASSWORD"'
            " | git credential approve",
            {
                "WRENN_GIT_PROTOCOL": protocol,
                "WRENN_GIT_HOST": host,
                "WRENN_GIT_USERNAME": username,
                "WRENN_GIT_PASSWORD": password,
            },
            cwd=cwd,
            envs=envs,
            timeout=timeout,
        )

    async def init(
        self,
        path: str = ".",
        *,
        bare: bool = False,
        initial_branch: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        args = ["init"] + (["--initial-branch", initial_branch] if initial_branch else [])
        return await self._git(
            args + (["--bare"] if bare else []) + [path], cwd=cwd, envs=envs, timeout=timeout
        )

    async def status(
        self,
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> GitStatus:
        result = await self._git(
            ["status", "--porcelain=v1", "--branch"], cwd=cwd, envs=envs, timeout=timeout
        )
        return parse_status(result.stdout)

    async def add(
        self,
        paths: Sequence[str] | None = None,
        *,
        all: bool = False,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        if all:
            return await self._git(["add", "-A"], cwd=cwd, envs=envs, timeout=timeout)
        return await self._git(
            ["add", "--", *(paths or ["."])], cwd=cwd, envs=envs, timeout=timeout
        )

    async def commit(
        self,
        message: str,
        *,
        allow_empty: bool = False,
        author_name: str | None = None,
        author_email: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        args: list[str] = []
        if author_name:
            args += ["-c", f"user.name={author_name}"]
        if author_email:
            args += ["-c", f"user.email={author_email}"]
        args += ["commit", "-m", message] + (["--allow-empty"] if allow_empty else [])
        return await self._git(args, cwd=cwd, envs=envs, timeout=timeout)

    async def branches(
        self,
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> builtins.list[GitBranch]:
        result = await self._git(
            ["branch", "--format=%(refname:short)\t%(HEAD)"], cwd=cwd, envs=envs, timeout=timeout
        )
        out = []
        for line in result.stdout.splitlines():
            name, _, head = line.partition("\t")
            out.append(GitBranch(name=name, is_current=head.strip() == "*"))
        return out

    async def create_branch(
        self,
        name: str,
        *,
        start_point: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        return await self._git(
            ["checkout", "-b", name] + ([start_point] if start_point else []),
            cwd=cwd,
            envs=envs,
            timeout=timeout,
        )

    async def checkout_branch(
        self,
        name: str,
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        return await self._git(["checkout", name], cwd=cwd, envs=envs, timeout=timeout)

    async def delete_branch(
        self,
        name: str,
        *,
        force: bool = False,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        return await self._git(
            ["branch", "-D" if force else "-d", name], cwd=cwd, envs=envs, timeout=timeout
        )

    async def push(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        force: bool = False,
        set_upstream: bool = False,
        username: str | None = None,
        password: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 60,
    ) -> CommandResult:
        args = ["push"] + (["--force"] if force else []) + (["-u"] if set_upstream else [])
        args += [remote] + ([branch] if branch else [])
        return await self._git(
            args, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )

    async def pull(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        rebase: bool = False,
        ff_only: bool = False,
        username: str | None = None,
        password: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 60,
    ) -> CommandResult:
        args = ["pull"] + (["--rebase"] if rebase else []) + (["--ff-only"] if ff_only else [])
        args += [remote] + ([branch] if branch else [])
        return await self._git(
            args, cwd=cwd, envs=envs, timeout=timeout, username=username, password=password
        )

    async def remote_add(
        self,
        name: str,
        url: str,
        *,
        fetch: bool = False,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        return await self._git(
            ["remote", "add"] + (["-f"] if fetch else []) + [name, url],
            cwd=cwd,
            envs=envs,
            timeout=timeout,
        )

    async def remote_get(
        self,
        name: str = "origin",
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> str | None:
        try:
            return (
                await self._git(["remote", "get-url", name], cwd=cwd, envs=envs, timeout=timeout)
            ).stdout.strip()
        except GitCommandError:
            return None

    async def set_config(
        self,
        key: str,
        value: str,
        *,
        scope: Literal["local", "global", "system"] = "local",
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        return await self._git(
            ["config", f"--{scope}", key, value], cwd=cwd, envs=envs, timeout=timeout
        )

    async def get_config(
        self,
        key: str,
        *,
        scope: Literal["local", "global", "system"] = "local",
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> str | None:
        try:
            return (
                await self._git(
                    ["config", f"--{scope}", "--get", key], cwd=cwd, envs=envs, timeout=timeout
                )
            ).stdout.strip()
        except GitCommandError:
            return None

    async def configure_user(
        self,
        name: str,
        email: str,
        *,
        scope: Literal["local", "global", "system"] = "global",
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> None:
        await self.set_config("user.name", name, scope=scope, cwd=cwd, envs=envs, timeout=timeout)
        await self.set_config("user.email", email, scope=scope, cwd=cwd, envs=envs, timeout=timeout)

    async def reset(
        self,
        *,
        mode: Literal["soft", "mixed", "hard", "merge", "keep"] | None = None,
        ref: str | None = None,
        paths: Sequence[str] | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        if mode is not None and mode not in ("soft", "mixed", "hard", "merge", "keep"):
            raise WrennValidationError("mode must be soft, mixed, hard, merge or keep")
        args = ["reset"] + ([f"--{mode}"] if mode else []) + ([ref] if ref else [])
        return await self._git(
            args + (["--", *paths] if paths else []), cwd=cwd, envs=envs, timeout=timeout
        )

    async def restore(
        self,
        paths: Sequence[str],
        *,
        staged: bool = False,
        worktree: bool = False,
        source: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> CommandResult:
        args = ["restore"] + (["--worktree"] if worktree else []) + (["--staged"] if staged else [])
        args += ([f"--source={source}"] if source else []) + ["--", *paths]
        return await self._git(args, cwd=cwd, envs=envs, timeout=timeout)
