"""Capsule boot, run as root inside a fresh private mount namespace (``unshare -m``).

It mounts the capsule's copy-on-write root (overlayfs: the template's layers over the
host's system directories, with the capsule's own upper directories on top), moves
itself into the capsule's cgroups, and replaces itself with bubblewrap, which adds
pid, network, IPC and UTS namespaces and starts the agent as the capsule's first
process. Every mount lives only in this namespace: when the capsule's last process
exits, the kernel drops them all, so nothing can be left mounted on the host.

Usage: python -I boot.py <plan.json>   (the plan is written by ``_sandbox.py``)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys


def mount_overlay(lowers: list[str], upper: str, work: str, target: str) -> None:
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    os.makedirs(target, exist_ok=True)
    # Overlay options show in the capsule's /proc/*/mountinfo as given: paths under the
    # data directory are given relative to it (the working directory), so its location
    # never shows inside.
    lowers, upper, work = [_relative(p) for p in lowers], _relative(upper), _relative(work)
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, target], check=True)


def _relative(path: str) -> str:
    cwd = os.getcwd()
    if path == cwd or path.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(path, cwd)
    return path


def main(plan_path: str) -> None:
    with open(plan_path) as fh:
        plan = json.load(fh)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    merged = plan["merged"]
    os.chdir(plan["data_dir"])
    disk = plan.get("disk")
    if disk:  # the writable layers on the capsule's size-limited image (_disk.py)
        os.makedirs(disk["mount"], exist_ok=True)
        subprocess.run(["mount", "-o", "loop", disk["image"], disk["mount"]], check=True)
        # overlayfs wants upper and work under one mount: both go to the image's own
        # mount; the capsule's ``upper`` shows the same files (the server reads them)
        for name in disk["binds"]:
            inner, outer = os.path.join(disk["mount"], name), os.path.join(disk["directory"], name)
            os.makedirs(inner, exist_ok=True)
            os.makedirs(outer, exist_ok=True)
            subprocess.run(["mount", "--bind", inner, outer], check=True)
            for layer in plan["overlays"]:
                for key in ("upper", "work"):
                    if layer[key].startswith(outer + "/"):
                        layer[key] = inner + layer[key][len(outer) :]
    for layer in plan["overlays"]:
        mount_overlay(layer["lowers"], layer["upper"], layer["work"], merged + layer["target"])
    for hidden in plan.get("hide", []):
        target = merged + hidden
        if os.path.isdir(target):
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4k,mode=000", "tmpfs", target], check=True
            )
    for procs_file in plan.get("cgroups", []):
        with open(procs_file, "w") as fh:
            fh.write(str(os.getpid()))
    # The OOM killer never picks bubblewrap or the agent (inherited by both); the agent
    # raises every command it starts, so a memory hog goes first. Lowering a score needs
    # CAP_SYS_RESOURCE, which a container may not grant: then the agent stays at 0 and
    # raises commands to the top instead (agent.py, ``oom_first``).
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("-1000")
    # bubblewrap is the capsule's pid 1: its command line is readable inside, so it reads
    # its options (host paths among them) from a pipe and shows only ``bwrap --args N``
    # and the command it runs, which names paths inside the capsule only.
    argv = plan["argv"]
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1 :]
    # Files the capsule reads at boot (the agent and its configuration) are copied in by
    # bubblewrap from descriptors, not bound from the host: a bind mount would show its
    # host path in mountinfo.
    for source, target in plan.get("data", []):
        fd = os.open(source, os.O_RDONLY)
        os.set_inheritable(fd, True)
        options += ["--perms", "0644", "--ro-bind-data", str(fd), target]
    encoded = b"".join(arg.encode() + b"\0" for arg in options)
    read_end, write_end = os.pipe()
    os.write(write_end, encoded)  # far below a pipe's buffer
    os.close(write_end)
    os.set_inheritable(read_end, True)
    os.execve(argv[0], [argv[0], "--args", str(read_end), *command], plan.get("env", {}))


if __name__ == "__main__":
    main(sys.argv[1])
