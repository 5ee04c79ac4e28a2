"""The smallest program: a capsule for a block, a command, a file. Runs on asyncio and
on trio unchanged. Needs WRENN_BASE_URL and WRENN_API_KEY (``wrenn local serve`` prints
them for a local server)."""

import anyio

from wrenn import AsyncWrennClient


async def main() -> None:
    async with AsyncWrennClient() as client, client.capsule() as cap:
        result = await cap.commands.run("echo hello from $(hostname)")
        print(result.stdout, end="")
        await cap.files.write("notes/todo.txt", "ship it\n")
        print("read back:", await cap.files.read("notes/todo.txt"), end="")
    # the capsule is destroyed here, also after an error or a cancellation


if __name__ == "__main__":
    anyio.run(main)
    anyio.run(main, backend="trio")
