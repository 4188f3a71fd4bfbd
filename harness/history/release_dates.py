"""When each release of a package was published, and what a user installing on a given day got.

A library's releases drag others along (trl's need matching transformers, accelerate, datasets, peft releases), and
trl 0.18.2 over today's transformers is not a stack anyone ran. So a bisect step pins each co-moving package to its
newest release published on or before the bisected release's day: what `pip install trl==X` resolved to then (the
idea of uv's `--exclude-newer`, applied per package so the pins are explicit and recorded). Publication times come
from PyPI's JSON API (the first file uploaded for a release), cached per package for a day.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from packaging.version import InvalidVersion, Version

from harness.base.errors import XeonftError
from harness.cell.assets import cache_dir

PYPI_JSON = "https://pypi.org/pypi/{name}/json"
CACHE_SECONDS = 24 * 3600


def parse_releases(doc: dict) -> dict[str, str]:
    """A PyPI JSON document's final releases (no pre-releases, none without files, none wholly yanked), each with
    the ISO time its first file was uploaded."""
    out: dict[str, str] = {}
    for version, files in (doc.get("releases") or {}).items():
        try:
            if Version(version).is_prerelease:
                continue
        except InvalidVersion:
            continue
        live = [f for f in files or [] if not f.get("yanked")]
        times = [str(f["upload_time_iso_8601"]) for f in live if f.get("upload_time_iso_8601")]
        if times:
            out[version] = min(times)
    return out


def published(name: str, cache: Path | None = None) -> dict[str, str]:
    """Each final release of `name` with its publication time (ISO 8601, UTC), from PyPI (cached a day)."""
    path = (cache or cache_dir() / "release-dates") / f"{name.lower()}.json"
    try:
        if time.time() - path.stat().st_mtime < CACHE_SECONDS:
            return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    url = PYPI_JSON.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            doc = json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, ValueError) as err:
        raise XeonftError(f"cannot read the release dates of {name} from {url}: {err}") from None
    dates = parse_releases(doc)
    if not dates:
        raise XeonftError(f"{url} lists no releases of {name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dates, sort_keys=True), encoding="utf-8")
    return dates


def as_of(dates: dict[str, str], when: str, ceiling: str | None = None) -> str | None:
    """The newest release published at or before `when` (an ISO time), never newer than `ceiling` (the version
    the bad end's environment holds); None when nothing was out yet."""
    cap = Version(ceiling) if ceiling else None
    out = [Version(v) for v, t in dates.items() if t <= when and (cap is None or Version(v) <= cap)]
    return str(max(out)) if out else None


def co_pins(primary: str, version: str, others: list[str], ceilings: dict[str, str],
            lookup: dict[str, dict[str, str]]) -> dict[str, str]:
    """The pins of the co-moving packages for `primary==version`: each the newest release out on that release's
    day, capped by `ceilings`. A package with no release by then is an error naming it."""
    when = lookup[primary].get(version)
    if when is None:
        raise XeonftError(f"{primary} {version}: no publication time on PyPI")
    pins = {}
    for name in others:
        match = as_of(lookup[name], when, ceilings.get(name))
        if match is None:
            raise XeonftError(f"{name} had no release by {when[:10]}, when {primary} {version} came out")
        pins[name] = match
    return pins
