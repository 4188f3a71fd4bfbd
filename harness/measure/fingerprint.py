"""What machine and software a result came from, recorded with every result set (never a secret)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from harness.base.secrets import is_secret
from harness.measure.host import cores, numa_nodes
from harness.measure.peak import bf16_kernels

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "numpy",
             "intel-extension-for-pytorch", "oneccl-bind-pt", "bitsandbytes")
ENV_PREFIXES = ("OMP_", "KMP_", "MKL_", "ONEDNN_", "DNNL_", "GOMP_", "LD_PRELOAD", "MALLOC_CONF", "TCMALLOC",
                "PYTORCH_", "TORCH", "TORCHINDUCTOR_", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                "XEONFT_", "OPENBLAS_", "CUDA_VISIBLE_DEVICES")
CPU_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "amx_fp16", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
             "avx_vnni", "avx2")
ALLOCATORS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"),
}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def safe_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that shape performance, minus anything whose name says it is a secret."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) and not is_secret(k)}


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata: importing IPEX with the wrong torch crashes."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def versions() -> dict[str, str]:
    """Python and the installed libraries of this process (what a run or a cell records about itself)."""
    return {"python": platform.python_version(), **{k: v for k, v in library_versions().items() if v}}


def packages() -> dict[str, str]:
    """Every distribution this interpreter imports (the first of each name on sys.path, as import finds it): the
    exact resolved stack a cell ran with, `pip freeze` without pip."""
    import importlib.metadata as md

    seen: dict[str, str] = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in seen:
            seen[name] = dist.version
    return dict(sorted(seen.items()))


def xeonft_commit() -> str | None:
    """The commit of the xeonft checkout running (with '+dirty' when it has uncommitted changes), where git says."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def find_allocator(name: str) -> str | None:
    """Path of jemalloc / tcmalloc (Debian's libjemalloc2 / libtcmalloc-minimal4) for LD_PRELOAD, if installed."""
    for d in LIB_DIRS:
        for lib in ALLOCATORS.get(name, ()):
            path = Path(d) / lib
            if path.exists():
                return str(path)
    return None


def _proc_cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def torch_build() -> dict[str, Any]:
    import torch

    config = torch.__config__.show()
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v?([\d.]+)", config)
    openmp = re.search(r"OpenMP (\d+)", config)
    return {
        "onednn": onednn.group(1) if onednn else None,
        "openmp": openmp.group(1) if openmp else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "bf16_kernels": bf16_kernels(),
        "intel_openmp": "libiomp5" in config,
    }


def cpu_info() -> dict[str, Any]:
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", [])) | _proc_cpu_flags()
    return {
        "brand": info.get("brand_raw"),
        "vendor": info.get("vendor_id_raw"),
        "arch": info.get("arch"),
        "family": info.get("family"),
        "model": info.get("model"),
        "hz_advertised": info.get("hz_advertised_friendly"),
        "l2_cache_bytes": info.get("l2_cache_size"),
        "l3_cache_bytes": info.get("l3_cache_size"),
        "flags": {f: f in flags for f in CPU_FLAGS},
        "amx": all(f in flags for f in ("amx_bf16", "amx_tile")),
    }


def topology() -> dict[str, Any]:
    phys = cores()
    nodes = numa_nodes()
    logical = psutil.cpu_count(logical=True) or 0
    return {
        "sockets": len({c.socket for c in phys}),
        "physical_cores": len(phys),
        "logical_cpus": logical,
        "threads_per_core": max((len(c.cpus) for c in phys), default=1),
        "numa_nodes": len(nodes),
        "node_cpus": {str(n): cpus for n, cpus in nodes.items()},
    }


def fingerprint() -> dict[str, Any]:
    """The machine and software of this process: CPU (AMX surfaced), topology, memory, OS, libraries, env."""
    mem = psutil.virtual_memory()
    uname = platform.uname()
    return {
        "hostname": uname.node,
        "cpu": cpu_info(),
        "topology": topology(),
        "memory_bytes": mem.total,
        "os": {"system": uname.system, "kernel": uname.release, "machine": uname.machine,
               "platform": platform.platform()},
        "python": platform.python_version(),
        "libraries": library_versions(),
        "torch_build": torch_build(),
        "tools": {"numactl": shutil.which("numactl"), "jemalloc": find_allocator("jemalloc"),
                  "tcmalloc": find_allocator("tcmalloc")},
        "env": safe_env(),
    }


def environment_key(fp: dict[str, Any]) -> str:
    """A hash of what makes results comparable: CPU, core count, memory, Python and library versions."""
    keep = {"cpu": fp["cpu"]["brand"], "flags": fp["cpu"]["flags"], "cores": fp["topology"]["physical_cores"],
            "python": fp["python"], "libraries": fp["libraries"], "onednn": fp["torch_build"]["onednn"]}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]
