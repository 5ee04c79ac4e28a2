"""git inside a capsule: a bare remote, a clone, a commit, a push."""

import anyio

from wrenn import AsyncWrennClient


async def main() -> None:
    async with AsyncWrennClient() as client, client.capsule() as cap:
        await cap.git.init("/tmp/remote.git", bare=True, initial_branch="main")
        await cap.git.configure_user("Ada", "ada@example.com")
        await cap.git.clone("file:///tmp/remote.git", "work")
        await cap.files.write("work/README.md", "# made in a capsule\n")
        await cap.git.add(cwd="work")
        await cap.git.commit("first commit", cwd="work")
        await cap.git.push("origin", "main", set_upstream=True, cwd="work")
        status = await cap.git.status(cwd="work")
        print(f"branch {status.branch} tracking {status.upstream}, clean: {status.is_clean}")


if __name__ == "__main__":
    anyio.run(main)
