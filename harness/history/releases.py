"""Released versions of a library from the package index pip is configured for (`pip index versions`, which
leaves out pre-releases and yanked files), in release order."""

from __future__ import annotations

import re
import subprocess
import sys

from packaging.version import InvalidVersion, Version

from harness.base.errors import XeonftError


def parse_index(text: str) -> list[str]:
    """The versions in `pip index versions` output, oldest first."""
    match = re.search(r"Available versions:\s*(.+)", text)
    if not match:
        return []
    out = []
    for v in match.group(1).split(","):
        try:
            out.append(Version(v.strip()))
        except InvalidVersion:
            continue
    return [str(v) for v in sorted(set(out))]


def available(lib: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", lib, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=120)
    versions = parse_index(proc.stdout)
    if not versions:
        why = (proc.stderr.strip().splitlines() or ["no versions listed"])[-1]
        raise XeonftError(f"cannot list the releases of {lib} from the package index: {why}")
    return versions


def between(versions: list[str], good: str, bad: str) -> list[str]:
    """The releases from `good` to `bad`, both included (either may be the newer: the order follows them)."""
    try:
        g, b = Version(good), Version(bad)
    except InvalidVersion as err:
        raise XeonftError(f"not a version: {err}") from None
    known = {Version(v): v for v in versions}
    missing = [str(x) for x in (g, b) if x not in known]
    if missing:
        raise XeonftError(f"{', '.join(missing)} not released (releases: {', '.join(versions[-12:])} ...)")
    lo, hi = min(g, b), max(g, b)
    span = [known[v] for v in sorted(known) if lo <= v <= hi]
    return span if g < b else span[::-1]


def companion(primary: str, versions: list[str]) -> str | None:
    """The latest release of a companion library whose major.minor equals the primary's (torch 2.8.x and
    intel-extension-for-pytorch 2.8.0 move together)."""
    p = Version(primary)
    same = [Version(v) for v in versions if Version(v).release[:2] == p.release[:2]]
    return str(max(same)) if same else None
