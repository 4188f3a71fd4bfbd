"""Library environments: the same matrix run under several pinned library sets, each in its own venv.

`envs/<name>.txt` in the repository pins a stack; `xeonft env create NAME` builds a venv from it in the cache
(with this checkout installed into it, editable, without its dependencies), and a matrix axis `env` runs each cell
under that venv's interpreter. `default` is the interpreter running xeonft itself.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from harness.cell.assets import cache_dir
from harness.errors import XeonftError

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
    print(f"creating environment '{name}' in {target} from {req}", file=sys.stderr)
    steps = [
        [python or sys.executable, "-m", "venv", "--clear", str(target)],
        [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(req)],
        [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-e",
         str(REPO)],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise XeonftError(f"creating environment '{name}' failed at `{' '.join(cmd[:4])} ...`:\n{tail}")
    marker.write_text(json.dumps({"name": name, "requirements": str(req), "requirements_sha256": digest,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    return target
