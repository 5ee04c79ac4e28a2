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

import json
import os
import subprocess
import sys


def mount_overlay(lowers: list[str], upper: str, work: str, target: str) -> None:
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    os.makedirs(target, exist_ok=True)
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, target], check=True)


def main(plan_path: str) -> None:
    with open(plan_path) as fh:
        plan = json.load(fh)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    merged = plan["merged"]
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
    os.execvp(plan["argv"][0], plan["argv"])


if __name__ == "__main__":
    main(sys.argv[1])
