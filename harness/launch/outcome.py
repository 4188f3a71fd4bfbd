"""What happened to a cell's process, in words: ok, timeout, unavailable, oom or failed, with the reason a user
can act on (the worker's own error line, torchrun's root cause, the exception's last line)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from harness.cell.protocol import ERROR_PREFIX, UNAVAILABLE_PREFIX
from harness.results.records import Status

EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")  # a traceback's last line
# torchrun's summary of the first rank that failed
TORCHRUN_ROOT_CAUSE = re.compile(r"rank\s*:\s*(?P<rank>\d+).*?\n\s*exitcode\s*:\s*(?P<code>-?\d+)", re.S)
OOM_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def classify(rc: int | None, timed_out: bool, stderr_tail: str,
             oom_kills: int | None = None) -> tuple[Status, str | None]:
    """`oom_kills`: how many processes the kernel's OOM killer took in this cgroup while the cell ran (None where
    that cannot be read). A SIGKILL is an OOM only with that evidence."""
    killed_by_oom = bool(oom_kills)
    evidence = f"the kernel's OOM killer (cgroup memory.events oom_kill +{oom_kills})"
    if timed_out:
        return "timeout", None
    if rc == 0:
        return "ok", None
    unavailable = [ln for ln in stderr_tail.splitlines() if ln.startswith(UNAVAILABLE_PREFIX)]
    if unavailable:  # the worker's own verdict (every rank of a torchrun cell says the same)
        return "unavailable", unavailable[-1].removeprefix(UNAVAILABLE_PREFIX).strip()
    if any(m in stderr_tail for m in OOM_MARKERS):
        return "oom", "ran out of memory"
    if rc == -signal.SIGKILL:
        if killed_by_oom:
            return "oom", f"killed by {evidence}"
        unknown = " (this machine's OOM-kill count cannot be read)" if oom_kills is None else \
            " (no OOM kill was recorded: another process or a person sent it)"
        return "failed", f"killed by SIGKILL{unknown}"
    if rc is not None and rc < 0:
        return "failed", f"crashed: killed by {signal.Signals(-rc).name}"
    root = stderr_tail.rfind("Root Cause")
    died = TORCHRUN_ROOT_CAUSE.search(stderr_tail, root if root >= 0 else 0)
    if died:
        code = int(died.group("code"))
        if code == -signal.SIGKILL and killed_by_oom:
            return "oom", f"rank {died.group('rank')} killed by {evidence}; torchrun stopped the other ranks"
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        errors = [ln for ln in stderr_tail.splitlines() if ln.startswith(ERROR_PREFIX)]
        detail = f": {errors[-1].removeprefix(ERROR_PREFIX).strip()}" if errors else ""
        return "failed", f"rank {died.group('rank')} died ({how}){detail}; torchrun stopped the other ranks"
    lines = [ln for ln in stderr_tail.splitlines() if ln.startswith(ERROR_PREFIX)]
    if lines:
        return "failed", lines[-1].removeprefix(ERROR_PREFIX).strip()
    exceptions = [ln for ln in stderr_tail.splitlines() if EXCEPTION_LINE.match(ln)]
    last = exceptions[-1] if exceptions else next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
    return "failed", f"exit code {rc}: {last.strip()}"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
