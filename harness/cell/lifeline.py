"""The worker's half of the lifeline (`harness.launch.lifeline` is the launcher's): die with the parent.

Linux's parent-death signal (prctl PR_SET_PDEATHSIG) is not inherited across fork(), so every process that must die
with its parent (each torchrun rank, the worker after its re-exec under numactl) sets its own.
"""

from __future__ import annotations

import ctypes
import os
import signal

import psutil

PR_SET_PDEATHSIG = 1

# Resolved here, in the parent, so the preexec_fn (run between fork and exec, where another thread may hold the
# loader's or malloc's lock) only calls an already-bound function.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def set_parent_death_signal(sig: int) -> None:
    if _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def _pid1_is_ours() -> bool:
    """In a container the launcher (or torchrun) may itself be pid 1: then ppid 1 is the real parent, not a reaper."""
    try:
        cmdline = " ".join(psutil.Process(1).cmdline())
    except psutil.Error:
        return False
    return any(word in cmdline for word in ("xeonft", "harness", "torch.distributed", "torchrun"))


def install_in_worker() -> None:
    """For the worker itself (every torchrun rank, first thing in main): die by SIGKILL when the direct parent
    (torchrun's agent, or the launcher) dies, since PDEATHSIG set by the launcher is not inherited by grandchildren.

    If the parent is already gone (reparented to pid 1), the worker kills itself now rather than train as an orphan.
    Calling it again after an exec (the worker re-execs itself under numactl) is harmless.
    """
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1 and not _pid1_is_ours():
        os.kill(os.getpid(), signal.SIGKILL)
