"""``wrenn templates build``: a template from a recipe of RUN/ENV/WORKDIR steps, built in
a real capsule of a real local server and saved as a snapshot; a failing step names
itself, shows its output and leaves neither a template nor a capsule behind. Nothing
here reaches the network: the steps only write files."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import anyio
import pytest

from tests import test_cli
from wrenn import AsyncWrennClient
from wrenn._cli.build import TemplateBuildError, build_template, parse_recipe
from wrenn._cli.common import UsageError

server = test_cli.server  # the module-scoped server fixture (one server per module)
wrenn = test_cli.wrenn

RECIPE = """\
# a template with a tool and its configuration
FROM minimal
ENV GREETING=hello from the recipe
WORKDIR /home/wrenn-user/app
RUN mkdir -p bin && \\
    printf '#!/bin/sh\\necho tool says "$@"\\n' > bin/tool && chmod +x bin/tool
RUN echo "$GREETING" > greeting.txt && echo built in $(pwd)
"""


def no_capsules_left(server: dict[str, str]) -> bool:
    """Whether the server's capsules are all gone (a destroy ends shortly after its 202)."""
    deadline = time.monotonic() + 10
    while json.loads(wrenn("ls", "--json", env=server).stdout):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_recipes_parse_with_continuations_comments_and_line_numbers() -> None:
    recipe = parse_recipe(RECIPE)
    assert recipe.base == "minimal"
    assert [(s.number, s.kind, s.line) for s in recipe.steps] == [
        (1, "ENV", 3),
        (2, "WORKDIR", 4),
        (3, "RUN", 5),
        (4, "RUN", 7),
    ]
    assert recipe.steps[2].text.startswith("mkdir -p bin && printf")
    with pytest.raises(UsageError, match=r"recipe:2: unknown instruction 'COPY'"):
        parse_recipe("RUN true\nCOPY a b\n")
    with pytest.raises(UsageError, match="at least one RUN"):
        parse_recipe("ENV A=1\n")
    with pytest.raises(UsageError, match=r"recipe:2: FROM must come once"):
        parse_recipe("RUN true\nFROM minimal\n")
    with pytest.raises(UsageError, match="ENV needs NAME=VALUE"):
        parse_recipe("ENV 1A=x\nRUN true\n")


def test_build_a_template_with_the_cli_then_use_it(server: dict[str, str], tmp_path: Path) -> None:
    recipe = tmp_path / "Recipe"
    recipe.write_text(RECIPE)
    built = wrenn("templates", "build", "-f", str(recipe), "tools", env=server)
    assert built.returncode == 0, built.stderr
    # a progress line per step, and the steps' own output
    for line in (
        "step 1/4: ENV GREETING=hello from the recipe",
        "step 2/4: WORKDIR /home/wrenn-user/app",
        "step 4/4: RUN",
        "snapshot tools",
    ):
        assert line in built.stderr
    assert "built in /home/wrenn-user/app\n" in built.stdout
    assert "template tools ready (4 steps" in built.stdout
    listed = json.loads(wrenn("templates", "ls", "--json", env=server).stdout)
    assert "tools" in [t["name"] for t in listed]
    # a capsule of the new template has the files, and the tool runs
    used = wrenn(
        "run",
        "--template",
        "tools",
        "--cwd",
        "/home/wrenn-user/app",
        "--",
        "sh",
        "-c",
        "cat greeting.txt && bin/tool works",
        env=server,
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout == "hello from the recipe\ntool says works\n"
    # the name is taken now: a second build fails before starting any capsule
    again = wrenn("templates", "build", "-f", "-", "tools", env=server, stdin="RUN true\n")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert no_capsules_left(server)


def test_a_failing_step_names_itself_and_leaves_nothing_behind(
    server: dict[str, str], tmp_path: Path
) -> None:
    recipe = tmp_path / "Broken"
    recipe.write_text("RUN echo first > /tmp/one\nRUN echo broken-output; exit 7\nRUN true\n")
    failed = wrenn("templates", "build", "--json", "-f", str(recipe), "broken", env=server)
    assert failed.returncode == 1
    assert "step 2/3 (RUN echo broken-output; exit 7, line 2)" in failed.stderr
    assert "exit code 7" in failed.stderr
    assert "broken-output" in failed.stderr
    assert "step 3/3" not in failed.stderr  # the build stopped there
    listed = json.loads(wrenn("templates", "ls", "--json", env=server).stdout)
    assert "broken" not in [t["name"] for t in listed]
    assert no_capsules_left(server)
    usage = wrenn("templates", "build", "broken", env=server)
    assert usage.returncode == 2
    assert "-f RECIPE NAME" in usage.stderr


@pytest.mark.async_only  # drives the async build function itself
async def test_build_through_the_sdk_on_either_backend(client: AsyncWrennClient) -> None:
    lines: list[str] = []
    out = io.StringIO()
    recipe = parse_recipe("WORKDIR sub/dir\nRUN pwd && echo made > here.txt\n")
    template = await build_template(client, recipe, "sub-dir", progress=lines.append, out=out)
    assert template.name == "sub-dir"
    assert lines == [
        "capsule from the default template",
        "step 1/2: WORKDIR sub/dir",
        "step 2/2: RUN pwd && echo made > here.txt",
        "snapshot sub-dir",
    ]
    assert out.getvalue() == "/home/wrenn-user/sub/dir\n"
    async with client.capsule(template="sub-dir") as cap:
        assert await cap.files.read("/home/wrenn-user/sub/dir/here.txt") == "made\n"
    with pytest.raises(TemplateBuildError) as caught:
        await build_template(client, parse_recipe("RUN echo nope >&2; false\n"), "never")
    assert "step 1/1" in str(caught.value)
    assert "nope" in str(caught.value)
    assert await client.snapshots.get("never") is None
    with anyio.fail_after(10):  # destroyed (destroying ends a moment after the answer)
        while await client.capsules.list():
            await anyio.sleep(0.1)
