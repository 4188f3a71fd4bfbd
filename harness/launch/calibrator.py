"""The launcher's side of the calibration beside every cell (the workload and its server are
`harness.measure.calibration`): one calibration process per sweep, asked to run right before and right after each
cell, at the cell's threads on the cell's CPUs.

It is started with the launcher's own interpreter and environment (`sys.executable`, `os.environ`): not the cell's
library environment or stack, not the matrix's variables, so nothing a sweep compares can move it. It dies with
the launcher. A calibration that fails (the process died, hung, or refused the CPUs) becomes a note on the cell's
record, never a lost cell; a process that died is started again for the next cell, at most `MAX_STARTS` times a
sweep.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from typing import Any

from harness.launch.lifeline import chain_preexec, die_with_parent, kill_tree
from harness.measure import calibration as workload
from harness.results.records import Calibration, CalibrationRun

MAX_STARTS = 3
START_TIMEOUT_S = 180.0  # importing torch on a loaded machine
ANSWER_TIMEOUT_S = 120.0  # one run is about a second; a stopped or wedged process is given up on


class CalibrationFailed(Exception):
    """A calibration run that gave no figures; its message becomes the record's note."""


class Calibrator:
    """The sweep's calibration process: started on first use, asked for one run at a time, closed at the end."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._buffer = b""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the calibrator: close() ends it)

    def __enter__(self) -> Calibrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> float:
        """Start the process and wait until it is ready (torch imported, operands made); return the seconds it took.
        Raises CalibrationFailed when it cannot, or has been started `MAX_STARTS` times already."""
        if self.starts >= MAX_STARTS:
            raise CalibrationFailed(f"the calibration process was started {self.starts} times this sweep and died "
                                    "each time: no more calibration in this sweep")
        self.starts += 1
        t0 = time.perf_counter()
        self._buffer = b""
        launcher = os.getpid()  # read here: inside preexec_fn it would be the child's own
        self.proc = subprocess.Popen(
            [sys.executable, "-m", workload.__name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=dict(os.environ), start_new_session=True,
            preexec_fn=chain_preexec(functools.partial(die_with_parent, launcher)))
        ready = self._answer(START_TIMEOUT_S, "starting")
        if not ready.get("ready"):
            self._stop()
            raise CalibrationFailed(f"the calibration process did not start: {ready}")
        return time.perf_counter() - t0

    def run(self, cpus: list[int], threads: int) -> CalibrationRun:
        """One run of the workload on `cpus` at `threads`; CalibrationFailed when it gives no figures."""
        if not self.alive():
            raise CalibrationFailed(self.why_gone())
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cpus": cpus, "threads": threads}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            raise CalibrationFailed(self.why_gone()) from None
        answer = self._answer(ANSWER_TIMEOUT_S, "running")
        if "error" in answer:
            raise CalibrationFailed(f"the calibration refused to run: {answer['error']}")
        return CalibrationRun.model_validate(answer)

    def _answer(self, timeout: float, doing: str) -> dict[str, Any]:
        """The next line the process writes, as JSON; CalibrationFailed if it dies or stays silent `timeout` s."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._stop()
                    raise CalibrationFailed(f"the calibration process gave no answer in {timeout:g} s ({doing}); "
                                            "stopped")
                if sel.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:  # end of file: the process is gone
                        self.proc.wait()
                        raise CalibrationFailed(self.why_gone())
                    self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            out = json.loads(line)
        except ValueError:
            out = None
        if not isinstance(out, dict):
            raise CalibrationFailed(f"the calibration process wrote {line[:200]!r}, not an answer")
        return out

    def why_gone(self) -> str:
        """Why the process is gone, in words: its exit status and the last line of its stderr."""
        code = self.proc.poll() if self.proc is not None else None
        how = "was never started" if self.proc is None else \
            f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        self._stderr.seek(0)
        last = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()][-1:]
        return f"the calibration process {how}" + (f" ({last[0].strip()[:200]})" if last else "")

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid)
            self.proc.wait()

    def close(self) -> None:
        """End the process: its stdin closed, it returns; killed if it does not within a few seconds."""
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):  # a dead process's pipe
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._stop()
        self._stderr.close()


class Beside:
    """The calibration beside one cell: `before()` right before it starts, `after()` right after it ends, then
    `record()`. Nothing here raises: a failure is kept as the record's note."""

    def __init__(self, calibrator: Calibrator, cpus: list[int], threads: int) -> None:
        self.calibrator, self.cpus, self.threads = calibrator, sorted(cpus), threads
        self.runs: dict[str, CalibrationRun | None] = {"before": None, "after": None}
        self.notes: list[str] = []
        self.seconds = 0.0
        self.start_seconds: float | None = None

    def _one(self, when: str) -> None:
        t0 = time.perf_counter()
        try:
            if not self.calibrator.alive():
                if self.calibrator.proc is not None:  # it was there: say what became of it
                    self.notes.append(f"{when}: {self.calibrator.why_gone()}; started again")
                self.start_seconds = (self.start_seconds or 0.0) + self.calibrator.start()
            self.runs[when] = self.calibrator.run(self.cpus, self.threads)
        except CalibrationFailed as err:
            self.notes.append(f"{when}: {err}")
        finally:
            self.seconds += time.perf_counter() - t0

    def before(self) -> None:
        self._one("before")

    def after(self) -> None:
        """The run after the cell, from the same process only: one started anew would not be the same reading."""
        t0 = time.perf_counter()
        try:
            self.runs["after"] = self.calibrator.run(self.cpus, self.threads)
        except CalibrationFailed as err:
            self.notes.append(f"after: {err}")
        finally:
            self.seconds += time.perf_counter() - t0

    def record(self) -> Calibration:
        runs = [r for r in self.runs.values() if r is not None]
        mean = {d: sum(r.gflops[d] for r in runs) / len(runs) for d in runs[0].gflops} if runs else None
        before, after = self.runs["before"], self.runs["after"]
        idle = after.cpu_seconds_start - before.cpu_seconds_end if before and after else None
        return Calibration(workload=workload.describe(self.threads), cpus=self.cpus, threads=self.threads,
                           before=before, after=after, mean=mean, seconds=self.seconds,
                           start_seconds=self.start_seconds, idle_cpu_seconds=idle, pid=self.calibrator.pid,
                           note="; ".join(self.notes) or None)
