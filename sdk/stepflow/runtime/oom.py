"""Was the user part killed by the kernel's OOM killer? (the memory cgroup's counter)

In a step pod the runtime's trusted part outlives the user part it started, so the kernel's
OOM killer, which picks the biggest process, kills the user code and the container does not
end ``OOMKilled``: the Job's status cannot say why. The memory cgroup's ``oom_kill`` counter
can; read before and after the user part runs, it turns "killed by SIGKILL" into
OutOfMemory. cgroup v2 (``memory.events``) and v1 (``memory.oom_control``, hybrid hosts) are
both read; inside a container the cgroup's own folder is mounted at the hierarchy's root.
"""

from __future__ import annotations

from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def _memory_group() -> tuple[Path, str, str] | None:
    """(folder, counters file, limit file) of this process's memory cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    groups = dict(line.split(":", 2)[1:] for line in lines if line.count(":") >= 2)
    if "memory" in groups:  # v1 (a hybrid host)
        path, files = groups["memory"], ("memory.oom_control", "memory.limit_in_bytes")
        candidates = [_ROOT / "memory" / path.lstrip("/"), _ROOT / "memory"]
    elif "" in groups:  # v2
        path, files = groups[""], ("memory.events", "memory.max")
        candidates = [_ROOT / path.lstrip("/"), _ROOT]
    else:
        return None
    for folder in candidates:
        if (folder / files[0]).exists():
            return folder, files[0], files[1]
    return None


def oom_kills() -> int | None:
    """This process's memory cgroup's OOM kills so far; None where the kernel does not say."""
    group = _memory_group()
    if group is None:
        return None
    try:
        for line in (group[0] / group[1]).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def memory_limit() -> str:
    """The memory cgroup's limit, e.g. ``160Mi`` (``max``: none)."""
    group = _memory_group()
    try:
        text = (group[0] / group[2]).read_text().strip() if group is not None else "max"
    except OSError:
        return "unknown"
    if not text.isdigit() or int(text) >= 2**62:
        return "max" if text.isdigit() else text
    value = int(text)
    return f"{value // 2**20}Mi" if value % 2**20 == 0 else f"{value} bytes"
