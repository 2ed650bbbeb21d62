"""Was the user part killed by the kernel's OOM killer? (cgroup v2's ``memory.events``)

In a step pod the runtime's trusted part outlives the user part it started, so the kernel's
OOM killer, which picks the biggest process, kills the user code and the container does not
end ``OOMKilled``: the Job's status cannot say why. The cgroup's ``oom_kill`` counter can;
read before and after the user part runs, it turns "killed by SIGKILL" into OutOfMemory.
"""

from __future__ import annotations

from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroup() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):  # cgroup v2's unified hierarchy
                return _CGROUP_ROOT / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def oom_kills() -> int | None:
    """This process's cgroup's OOM kills so far; None where cgroup v2 does not say."""
    group = _own_cgroup()
    if group is None:
        return None
    try:
        for line in (group / "memory.events").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def memory_limit() -> str:
    """The cgroup's memory limit, e.g. ``160Mi`` (``max``: none)."""
    group = _own_cgroup()
    try:
        text = (group / "memory.max").read_text().strip() if group is not None else "max"
    except OSError:
        return "unknown"
    if not text.isdigit():
        return text
    value = int(text)
    return f"{value // 2**20}Mi" if value % 2**20 == 0 else f"{value} bytes"
