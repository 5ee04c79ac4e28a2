"""The code runner's scientific stack (the ``code`` extra): charts come back as images,
DataFrames as HTML tables, a chart's data as :class:`wrenn.Chart`, through a real Jupyter
kernel in a wrenn_local capsule — via the async API and (the ``client`` fixture's ``sync``
case) the sync one."""

from __future__ import annotations

import struct

from wrenn import AsyncWrennClient

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (right after the magic and chunk header)."""
    assert png[:8] == PNG_MAGIC
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


async def test_charts_come_back_as_png_and_svg(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        # the server's prebuilt font list is in place before matplotlib is first imported
        seeded = await cap.run_code(
            "import glob, os, sys\n"
            "('matplotlib' in sys.modules, "
            "len(glob.glob(os.path.expanduser('~/.cache/matplotlib/fontlist-*.json'))))"
        )
        assert seeded.text == "(False, 1)"
        shown = await cap.run_code(
            "import matplotlib.pyplot as plt\n"
            "plt.plot([1, 4, 9, 16], label='squares')\n"
            "plt.title('squares')\n"
            "plt.show()"
        )
        assert shown.error is None, shown.error
        (chart,) = [r for r in shown.results if r.png is not None]
        png = chart.data("png")
        assert png is not None
        width, height = png_size(png)
        assert width > 100
        assert height > 100
        assert chart.text is not None
        assert "Figure" in chart.text
        # beside the image, the chart's data
        assert chart.chart is not None
        assert (chart.chart.type, chart.chart.title) == ("line", "squares")
        (series,) = chart.chart.elements
        assert series["label"] == "squares"
        assert series["points"] == [[0, 1], [1, 4], [2, 9], [3, 16]]
        # a figure as the cell's last expression is the main result, as an image
        last = await cap.run_code("fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])\nfig")
        assert last.error is None, last.error
        main = [r for r in last.results if r.is_main_result]
        assert len(main) == 1
        main_png = main[0].data("png")
        assert main_png is not None
        assert main_png.startswith(PNG_MAGIC)
        bars = main[0].chart
        assert bars is not None
        assert bars.type == "bar"
        assert [(e["label"], e["value"]) for e in bars.elements] == [("a", 3), ("b", 5)]
        # several axes: a superchart of charts
        grid = await cap.run_code(
            "fig, (left, right) = plt.subplots(1, 2)\n"
            "left.scatter([1, 2], [3, 4]); right.pie([1, 3], labels=['x', 'y'])\n"
            "fig.suptitle('both'); plt.show()"
        )
        (both,) = [r.chart for r in grid.results if r.chart is not None]
        assert (both.type, both.title) == ("superchart", "both")
        scatter, pie = both.elements
        assert scatter.type == "scatter"
        assert scatter.elements[0]["points"] == [[1, 3], [2, 4]]
        assert pie.type == "pie"
        assert [(e["label"], e["share"]) for e in pie.elements] == [("x", 0.25), ("y", 0.75)]
        vector = await cap.run_code(
            "from matplotlib_inline.backend_inline import set_matplotlib_formats\n"
            "set_matplotlib_formats('svg')\n"
            "import seaborn as sns\n"
            "sns.histplot([1, 2, 2, 3, 3, 3])\n"
            "plt.show()"
        )
        assert vector.error is None, vector.error
        svgs = [r.svg for r in vector.results if r.svg is not None]
        assert len(svgs) == 1
        assert "<svg" in svgs[0]


async def test_dataframes_come_back_as_html_tables(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        table = await cap.run_code(
            "import numpy as np, pandas as pd\n"
            "df = pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': np.array([4.5, 19.25])})\n"
            "df"
        )
        assert table.error is None, table.error
        (main,) = table.results
        assert main.is_main_result
        assert main.html is not None
        assert "<table" in main.html
        for cell in ("city", "temp", "Oslo", "Lima", "19.25"):
            assert f">{cell}<" in main.html
        assert main.text is not None
        assert "Oslo" in main.text
        # the rest of the stack imports (nothing here touches the network)
        stack = await cap.run_code(
            "import requests, seaborn, matplotlib\n"
            "(type(requests.Session()).__name__, float(np.mean(df['temp'])))"
        )
        assert stack.error is None, stack.error
        assert stack.text == "('Session', 11.875)"


async def test_a_bash_kernel_context(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        bash = await cap.code.create_context(kernel="bash")
        assert bash.kernel_name == "bash"
        first = await cap.run_code("N=6; cd /tmp && echo $((N * 7)) in $(pwd)", context=bash)
        assert first.error is None, first.error
        assert "".join(first.logs.stdout).strip() == "42 in /tmp"
        # state is kept between cells, as in a shell
        second = await cap.run_code("echo $N $(pwd); [ -d /nowhere ]", context=bash)
        assert "".join(second.logs.stdout).strip() == "6 /tmp"
        assert second.error is not None  # a failing last command fails the cell
        # the python default context is still python
        assert (await cap.run_code("6 * 7")).text == "42"
