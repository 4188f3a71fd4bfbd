"""Library environments: the same matrix run under several pinned library sets, each in its own venv.

`envs/<name>.txt` in the repository pins a stack; `xeonft env create NAME` builds a venv from it in the cache
(with this checkout installed into it, editable, without its dependencies), and a matrix axis `env` runs each cell
under that venv's interpreter. `default` is the interpreter running xeonft itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.base.errors import XeonftError
from harness.cell.assets import cache_dir

DEFAULT = "default"
REPO = Path(__file__).resolve().parents[2]


def requirements_dir() -> Path:
    return REPO / "envs"


def available() -> list[str]:
    return sorted(p.stem for p in requirements_dir().glob("*.txt"))


def env_dir(name: str) -> Path:
    return cache_dir() / "envs" / name


def created() -> list[str]:
    root = cache_dir() / "envs"
    return sorted(p.name for p in root.iterdir() if (p / "xeonft-env.json").is_file()) if root.is_dir() else []


def interpreter(name: str) -> str:
    """The Python that runs a cell of environment `name`; a clear error when it was never created."""
    if name == DEFAULT:
        return sys.executable
    python = env_dir(name) / "bin" / "python"
    if not (env_dir(name) / "xeonft-env.json").is_file() or not python.exists():
        known = ", ".join(available()) or "none"
        raise XeonftError(f"environment '{name}' does not exist: create it with `xeonft env create {name}` "
                          f"(requirement files in envs/: {known})")
    return str(python)


def create(name: str, python: str | None = None) -> Path:
    """Build the venv for envs/<name>.txt (re-using it when the file has not changed)."""
    req = requirements_dir() / f"{name}.txt"
    if name == DEFAULT or not req.is_file():
        raise XeonftError(f"no requirement file envs/{name}.txt (available: {', '.join(available()) or 'none'})")
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    target = env_dir(name)
    marker = target / "xeonft-env.json"
    if marker.is_file() and json.loads(marker.read_text()).get("requirements_sha256") == digest:
        print(f"environment '{name}' is up to date: {target}", file=sys.stderr)
        return target
    # Built aside (NAME.building) and swapped in: a failed build leaves the working environment as it was.
    building = target.with_name(f"{name}.building")
    old = target.with_name(f"{name}.old")
    print(f"creating environment '{name}' from {req} (beside {target}, swapped in when it works)", file=sys.stderr)
    shutil.rmtree(building, ignore_errors=True)
    steps = [
        [python or sys.executable, "-m", "venv", str(building)],
        [str(building / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(req)],
        [str(building / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-e",
         str(REPO)],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise XeonftError(f"creating environment '{name}' failed at `{' '.join(cmd[:4])} ...` (the existing "
                              f"environment, if any, is untouched):\n{tail}")
    (building / "xeonft-env.json").write_text(json.dumps({
        "name": name, "requirements": str(req), "requirements_sha256": digest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    # a venv's console scripts name the folder they were built in: `venv --upgrade` rewrites what it owns for the
    # final folder (xeonft itself only ever runs the environment's bin/python, which does not care)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    building.rename(target)
    subprocess.run([python or sys.executable, "-m", "venv", "--upgrade", str(target)], capture_output=True)
    shutil.rmtree(old, ignore_errors=True)
    return target


def digest(name: str) -> str:
    """The requirements digest an environment was built from ('' for xeonft's own): part of its cells' keys, so a
    resume after the pins changed runs them again."""
    if name == DEFAULT:
        return ""
    marker = env_dir(name) / "xeonft-env.json"
    try:
        return str(json.loads(marker.read_text()).get("requirements_sha256", ""))[:16]
    except (OSError, ValueError):
        return ""
