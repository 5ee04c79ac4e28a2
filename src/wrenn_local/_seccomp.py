"""The capsule's syscall filter: a classic BPF program for seccomp, generated here.

Bubblewrap loads it (``--seccomp FD``) just before it starts the agent, so every process
of a capsule runs under it. The program is small and fixed; it is written here as a
list of ``sock_filter`` instructions (no compiled dependency such as libseccomp):

1. a syscall from another architecture (i386 through ``int 0x80``) or the x32 ABI is
   refused with ``ENOSYS``: the numbers below mean something else there;
2. each call in :data:`REFUSED` fails with ``EPERM``;
3. ``clone`` and ``unshare`` with ``CLONE_NEWUSER`` fail with ``EPERM`` (no nested user
   namespace), and ``clone3`` fails with ``ENOSYS`` (its flags live in memory a filter
   cannot read; the C library then falls back to ``clone``);
4. everything else is allowed.

Why each call is refused is in docs/design/security.md. Only x86_64 has a table:
:func:`program` returns ``None`` elsewhere and the capsule runs without a filter (said
in ``/health`` and the capsule's metadata).
"""

from __future__ import annotations

import errno
import platform
import struct
from typing import Final

__all__ = ["CLONE_NEWUSER", "REFUSED", "SYSCALLS_X86_64", "program"]

# linux/audit.h
AUDIT_ARCH_X86_64: Final = 0xC000003E
X32_SYSCALL_BIT: Final = 0x40000000
CLONE_NEWUSER: Final = 0x10000000

# linux/seccomp.h
SECCOMP_RET_ALLOW: Final = 0x7FFF0000
SECCOMP_RET_ERRNO: Final = 0x00050000

# linux/filter.h (classic BPF)
BPF_LD_W_ABS: Final = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K: Final = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JSET_K: Final = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K: Final = 0x06  # BPF_RET | BPF_K

# struct seccomp_data offsets
OFF_NR: Final = 0
OFF_ARCH: Final = 4
OFF_ARG0_LOW: Final = 16  # little endian: the low 32 bits of args[0]

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)
SYSCALLS_X86_64: Final[dict[str, int]] = {
    "clone": 56,
    "pivot_root": 155,
    "acct": 163,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "open_by_handle_at": 304,
    "setns": 308,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}

# Refused outright with EPERM (reasons: docs/design/security.md, "Syscall filter").
REFUSED: Final = (
    # leaving or reshaping the capsule's namespaces and mounts
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "open_by_handle_at",
    # kernel keyrings are not namespaced
    "keyctl",
    "add_key",
    "request_key",
    # large kernel attack surface, rarely needed by workloads
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # the host's kernel and devices
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
)


def _build(table: dict[str, int], arch: int) -> bytes:
    # Instructions are (code, k, jump-if-true label, jump-if-false label); a label is
    # resolved to a forward offset from the next instruction, ``None`` means "next".
    # Layout: check the arch, refuse x32, one ``jeq`` per refused call, the clone
    # family, allow; then the shared ARG0 check and the two refusals.
    Insn = tuple[int, int, str | None, str | None]
    main: list[Insn] = [
        (BPF_LD_W_ABS, OFF_ARCH, None, None),
        (BPF_JEQ_K, arch, None, "ENOSYS"),
        (BPF_LD_W_ABS, OFF_NR, None, None),
        (BPF_JSET_K, X32_SYSCALL_BIT, "ENOSYS", None),
        *((BPF_JEQ_K, table[name], "EPERM", None) for name in REFUSED),
        (BPF_JEQ_K, table["clone3"], "ENOSYS", None),
        (BPF_JEQ_K, table["clone"], "ARG0", None),
        (BPF_JEQ_K, table["unshare"], "ARG0", None),
        (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
    ]
    blocks: dict[str, list[Insn]] = {
        "ARG0": [
            (BPF_LD_W_ABS, OFF_ARG0_LOW, None, None),
            (BPF_JSET_K, CLONE_NEWUSER, "EPERM", None),
            (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ],
        "EPERM": [(BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM, None, None)],
        "ENOSYS": [(BPF_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS, None, None)],
    }
    insns = list(main)
    labels: dict[str, int] = {}
    for name, block in blocks.items():
        labels[name] = len(insns)
        insns += block

    def offset(label: str | None, at: int) -> int:
        if label is None:
            return 0
        distance = labels[label] - at - 1
        if not 0 <= distance <= 255:
            raise ValueError("seccomp program jump out of range")
        return distance

    return b"".join(
        struct.pack("<HBBI", code, offset(jt, at), offset(jf, at), k)
        for at, (code, k, jt, jf) in enumerate(insns)
    )


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine as ``sock_filter`` bytes, or ``None`` if unknown."""
    machine = machine or platform.machine()
    if machine in ("x86_64", "amd64", "AMD64"):
        return _build(SYSCALLS_X86_64, AUDIT_ARCH_X86_64)
    return None
