"""The header of a result bundle: `xeonft-bundle.json`, a bundle's first member, says what the bundle holds and how
to check it (each file's size and SHA-256, and one digest over them). Published with the records
(`docs/schema/bundle-header.json`). The bundle is written by `harness.results.bundle` and read back by
`harness.results.bundle_check`; the result set's side of both is `harness.results.bundle_files`.

The bundle's layout, by `bundle_version` (the records inside keep their own `schema_version`):

    1  a gzip'd tar: this header first, then manifest.json, cells/<key>.json and (optionally) logs/<key>.log
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from harness.measure.kind import MachineFacts
from harness.measure.steps import Open

FORMAT = "xeonft-bundle"
BUNDLE_VERSION = 1
HEADER = "xeonft-bundle.json"
# the result set's files a bundle may hold: a name of letters, digits, '_', '-' and '.' (never first), in its folder
NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}"
MEMBER = rf"^(manifest\.json|cells/{NAME}\.json|logs/{NAME}\.log)$"


def digest_of(files: Iterable[BundleFile]) -> str:
    """The bundle's digest: SHA-256 over one line `<path> <sha256>\\n` per file, sorted by path. It names the result
    set's content: the same files give the same digest, whoever bundled them and when."""
    lines = "".join(f"{f.path} {f.sha256}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()


class BundleFile(Open):
    """One file of the result set, as the bundle holds it."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(pattern=MEMBER, description="Its path in the result set (and the bundle): manifest.json, "
                                                  "cells/<key>.json or logs/<key>.log.")
    size: int = Field(ge=0, description="Its size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The SHA-256 of its bytes, in hex.")


class BundleHeader(Open):
    """`xeonft-bundle.json`: the bundle's format and layout, the result set it holds, the machine it ran on, and
    the digests that check it."""

    model_config = ConfigDict(frozen=True)

    format: Literal["xeonft-bundle"] = Field(description="Always xeonft-bundle.")
    bundle_version: int = Field(strict=True, description="The bundle's layout (see harness.results.bundle_model): "
                                                         "a reader refuses a newer one.")
    schema_version: int = Field(strict=True, description="The newest layout among the records inside (see "
                                                         "harness.results.records): a reader refuses a newer one.")
    name: str | None = Field(default=None, description="The result set's name (its manifest's).")
    set_id: str | None = Field(default=None, description="The result set's id, when its manifest has one.")
    created: str | None = Field(default=None, description="When the result set was created (its manifest's; not "
                                                          "when it was bundled, so that a bundle is reproducible).")
    machine: MachineFacts = Field(description="The machine the set ran on (harness.measure.kind), from the "
                                              "fingerprint in its manifest.")
    kind: str = Field(description="The machine's kind: equal for machines whose runs may pool.")
    label: str = Field(description="The machine in words.")
    logs: bool = Field(description="Whether the cells' logs are included.")
    files: list[BundleFile] = Field(description="Every file of the bundle but this header, sorted by path.")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 over the lines '<path> <sha256>', one "
                                                               "per file, sorted by path, each ending in a newline.")

    @model_validator(mode="after")
    def _consistent(self) -> BundleHeader:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a file is listed twice")
        if "manifest.json" not in paths:
            raise ValueError("manifest.json is not listed")
        if self.digest != digest_of(self.files):
            raise ValueError("the digest is not the one of its files' list")
        return self

    @property
    def short(self) -> str:
        """The digest's first 12 characters, as names and messages show it."""
        return self.digest[:12]
