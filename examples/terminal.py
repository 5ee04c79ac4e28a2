"""Drive an interactive terminal, detach from it, then reattach to it by its tag."""

import anyio

from wrenn import AsyncWrennClient


async def main() -> None:
    async with AsyncWrennClient() as client, client.capsule() as cap:
        async with cap.pty("/bin/sh", cols=100, rows=30, envs={"PS1": "$ "}) as term:
            await term.write("cd /tmp && export NAME=capsule\n")
            tag = term.tag
            term.detach()  # keep the shell running when this block ends
        assert tag is not None
        # the shell outlived the first connection: attach again by tag
        async with cap.pty_connect(tag) as again:
            await again.write("echo hello from $NAME in $(pwd); stty size; exit 7\n")
            output = b"".join([chunk async for chunk in again.output()])
            print(output.decode(errors="replace").replace("\r", ""))
            print("exit code:", again.exit_code)


if __name__ == "__main__":
    anyio.run(main, backend="trio")
