"""Stateful code in a Jupyter kernel inside a capsule (template code-runner-beta)."""

import anyio

from wrenn import AsyncWrennClient


async def main() -> None:
    async with AsyncWrennClient() as client, client.capsule(template="code-runner-beta") as cap:
        await cap.run_code("import statistics\nsamples = [3, 1, 4, 1, 5, 9, 2, 6]")
        mean = await cap.run_code("statistics.mean(samples)")
        print("mean:", mean.text)
        shown = await cap.run_code("from IPython.display import HTML\nHTML('<b>bold</b>')")
        print("html result:", shown.results[0].html)
        failed = await cap.run_code("samples[100]")
        print("error as data:", failed.error.name if failed.error else None)
        other = await cap.create_code_context()
        separate = await cap.run_code("'samples' in globals()", context=other)
        print("another context shares no state:", separate.text)
        async with cap.code.stream("for i in range(3): print('tick', i)") as run:
            async for item in run:
                print("streamed:", item)


if __name__ == "__main__":
    anyio.run(main)
