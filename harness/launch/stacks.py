"""Library stacks from pins, layered over xeonft's own environment.

A stack is a venv (no pip of its own) whose site-packages holds only what its pins change; a `.pth` line adds
xeonft's own site-packages behind it, so torch (gigabytes) and everything else unpinned is shared, and xeonft
itself imports from this checkout. pip installs the pins into the stack with the shared torch held by a
constraint: a pin that needs another torch fails with a message rather than pulling a multi-GB build. A stack
lives in the cache under a digest of its resolved requirement set (the pins, the Python, the shared torch) and is
reused by every sweep and bisect that asks for the same set; building one takes seconds and megabytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.cell.assets import cache_dir
from harness.config.stack import Stack

MARKER = "xeonft-stack.json"
# the stack's interpreter imports harness through the shared site-packages: one rule for what "installed" means
FREEZE = "import json; from harness.measure.fingerprint import packages; print(json.dumps(packages()))"


def base_packages(python: str | None = None) -> dict[str, str]:
    out = subprocess.run([python or sys.executable, "-c", FREEZE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _shared_torch() -> str | None:
    import importlib.metadata as md

    try:
        return md.version("torch")
    except md.PackageNotFoundError:
        return None


def stack_key(stack: Stack) -> str:
    """Content address: the pins, this Python, the shared torch (not the name: two names, one stack)."""
    basis = {"pins": sorted(stack.resolved().pins), "python": sys.version.split()[0], "torch": _shared_torch(),
             "base": sys.prefix}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def stack_dir(stack: Stack) -> Path:
    return cache_dir() / "stacks" / stack_key(stack)


def info(stack: Stack) -> dict[str, Any] | None:
    try:
        return json.loads((stack_dir(stack) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def interpreter(stack: Stack) -> str:
    """The stack's Python; a clear error when it was never built."""
    folder = stack_dir(stack)
    if info(stack) is None or not (folder / "bin" / "python").exists():
        raise XeonftError(f"stack '{stack.name}' ({', '.join(stack.resolved().pins) or 'no pins'}) is not built: "
                          "run with --create-envs to build it first")
    return str(folder / "bin" / "python")


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


# What a stack that pins torch costs, measured here (torch 2.8.0 from PyPI on Linux x86_64: its CUDA build and the
# nvidia-* libraries it pulls): said before such a stack is built, which happens only when asked for by name.
TORCH_STACK_COST = "a torch build of its own from PyPI, on Linux x86_64 the CUDA build: 6.3 GB for torch 2.8.0 here"
ALLOW_TORCH_FLAG = "--allow-torch-stacks"


def torch_cost(stack: Stack) -> str | None:
    """What building `stack` downloads beyond its small pins, when it pins torch; None when it does not."""
    pins = stack.torch_pins
    return f"stack '{stack.name}' pins {', '.join(pins)}: building it installs {TORCH_STACK_COST}" if pins else None


def build(stack: Stack, allow_torch: bool = False) -> Path:
    """Build the stack (or find it built). Returns its folder; its marker records pins, resolved versions, what
    differs from the shared environment, the build time and the size on disk. A stack that pins torch is built
    only with `allow_torch` (the command line's --allow-torch-stacks), its cost said first."""
    stack = stack.resolved()
    target = stack_dir(stack)
    if info(stack) is not None:
        return target
    cost = torch_cost(stack)
    if cost and not allow_torch:
        raise XeonftError(f"{cost}; pass {ALLOW_TORCH_FLAG} to build it")
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(building)], check=True, capture_output=True)
    site = _site_packages(building)
    shared = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    # an `import` line in a .pth runs at start-up: addsitedir also processes the shared .pth files (the editable
    # install of xeonft among them), and appends, so the stack's own packages come first
    (site / "_xeonft_shared.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in shared))
    torch = _shared_torch()
    constraints = building / "constraints.txt"
    pinned = {p.split("=")[0].split("<")[0].split(">")[0].strip().lower() for p in stack.pins}
    constraints.write_text(f"torch=={torch}\n" if torch and "torch" not in pinned else "")
    if stack.pins:
        cmd = [sys.executable, "-m", "pip", "--python", str(building / "bin" / "python"), "install",
               "--disable-pip-version-check", "--no-input", "-c", str(constraints), *stack.pins]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            hint = " (it needs a torch other than the shared one: pin torch in the stack too)" if "torch" in tail \
                else ""
            raise XeonftError(f"building stack '{stack.name}' ({', '.join(stack.pins)}) failed{hint}:\n{tail}")
    resolved = base_packages(str(building / "bin" / "python"))
    base = base_packages()
    size = sum(f.stat().st_size for f in building.rglob("*") if f.is_file() and not f.is_symlink())
    (building / MARKER).write_text(json.dumps({
        "name": stack.name, "pins": list(stack.pins), "key": target.name, "python": sys.version.split()[0],
        "shared_torch": torch, "resolved": resolved,
        "changed": {k: {"shared": base.get(k), "stack": v} for k, v in resolved.items() if base.get(k) != v},
        "build_seconds": round(time.perf_counter() - t0, 1), "bytes": size,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    if target.exists():
        shutil.rmtree(target)
    building.rename(target)
    return target
