"""The one reader of this host's memory (wrenn_local/_host_memory.py), and what uses it:
the ``memory_mb`` bound, the host's entry, the spare pool's share."""

from __future__ import annotations

from pathlib import Path

import pytest

from wrenn_local._host_memory import HostMemory, host_memory
from wrenn_local._hosts import _memory_mb
from wrenn_local._spares import host_memory_share

MEMINFO = """\
MemTotal:       24576000 kB
MemFree:         1000000 kB
MemAvailable:    6144000 kB
Buffers:          123456 kB
"""


def test_the_totals_are_read_by_name_wherever_they_stand(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    assert host_memory(str(meminfo)) == HostMemory(total_kib=24576000, available_kib=6144000)
    assert host_memory(str(meminfo)).total_mb == 24000  # type: ignore[union-attr]
    assert host_memory(str(meminfo)).available_share == 0.25  # type: ignore[union-attr]
    # the order is the kernel's, not ours to rely on
    meminfo.write_text("".join(reversed(MEMINFO.splitlines(keepends=True))))
    assert host_memory(str(meminfo)) == HostMemory(total_kib=24576000, available_kib=6144000)


@pytest.mark.parametrize(
    "text",
    ["", "MemFree: 12 kB\n", "MemTotal: lots kB\n", "MemTotal:\n"],
    ids=["empty", "no-total", "not-a-number", "no-value"],
)
def test_a_meminfo_without_a_readable_total_is_unknown(tmp_path: Path, text: str) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(text)
    assert host_memory(str(meminfo)) is None
    assert host_memory(str(tmp_path / "absent")) is None


def test_a_kernel_that_does_not_say_what_is_available_counts_as_all_available(
    tmp_path: Path,
) -> None:
    # before Linux 3.14 there is no MemAvailable: the pool must not think the host short
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2048 kB\nMemFree: 10 kB\n")
    memory = host_memory(str(meminfo))
    assert memory == HostMemory(total_kib=2048, available_kib=None)
    assert memory is not None
    assert memory.available_share == 1.0


def test_the_users_of_the_reader_agree_with_the_kernel() -> None:
    fields = {
        line.split(":")[0]: int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith(("MemTotal:", "MemAvailable:"))
    }
    assert _memory_mb() == fields["MemTotal"] // 1024
    # (MemAvailable moves between two reads: the share is close, not equal)
    assert abs(host_memory_share() - fields["MemAvailable"] / fields["MemTotal"]) < 0.05
