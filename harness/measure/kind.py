"""What kind of machine a result came from: the facts of a fingerprint that decide whether two machines' numbers
may be pooled (the same CPU model and flags, cores, sockets and memory), and its name for people.

Two machines of one kind are interchangeable for a sizing answer: their runs pool. Machines of different kinds
never pool, whatever a user names them. The hostname is a fact but not part of the kind: it tells two machines of
one kind apart when a user asks for that.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GIB = 2**30
# the flags that change which kernels run, in the order a label shows them
FLAG_NAMES = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16",
              "avx512_vnni": "AVX-512 VNNI", "avx512f": "AVX-512", "avx_vnni": "AVX-VNNI", "avx2": "AVX2"}


class MachineFacts(BaseModel):
    """The facts of one machine that its numbers depend on, read from its fingerprint."""

    model_config = ConfigDict(frozen=True)

    hostname: str | None = Field(default=None, description="The machine's name (not part of its kind).")
    cpu: str | None = Field(default=None, description="The CPU's brand string.")
    family: int | None = Field(default=None, description="The CPU family (cpuid).")
    model: int | None = Field(default=None, description="The CPU model (cpuid).")
    flags: tuple[str, ...] = Field(default=(), description="The ISA flags of interest the CPU has, sorted.")
    cores: int | None = Field(default=None, description="Physical cores.")
    sockets: int | None = Field(default=None, description="Sockets.")
    numa_nodes: int | None = Field(default=None, description="NUMA nodes.")
    memory_gib: int | None = Field(default=None, description="Memory, rounded to whole GiB (what the OS reports "
                                                             "varies by a few hundred MiB between identical VMs).")

    @property
    def kind(self) -> str:
        """A 12-hex id of everything but the hostname: equal for machines whose runs may pool."""
        facts = self.model_dump(mode="json", exclude={"hostname"})
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags and "amx_tile" in self.flags

    @property
    def label(self) -> str:
        """E.g. 'AMD EPYC (family 25 model 17), 2 cores, 1 socket, 24 GiB, AVX-512 BF16, no AMX'."""
        cpu = self.cpu or "unknown CPU"
        if self.family is not None and self.model is not None:
            cpu += f" (family {self.family} model {self.model})"
        parts = [cpu]
        if self.cores is not None:
            parts.append(f"{self.cores} core{'s' if self.cores != 1 else ''}")
        if self.sockets is not None:
            parts.append(f"{self.sockets} socket{'s' if self.sockets != 1 else ''}")
        if self.memory_gib is not None:
            parts.append(f"{self.memory_gib} GiB")
        isa = next((name for flag, name in FLAG_NAMES.items() if flag in self.flags and flag != "amx_bf16"), None)
        if isa:
            parts.append(isa)
        parts.append("AMX" if self.amx else "no AMX")
        return ", ".join(parts)


def machine_facts(fingerprint: dict[str, Any] | None) -> MachineFacts:
    """The facts of a fingerprint as a result set stores it (`Fingerprint.model_dump`); missing parts stay None."""
    fp = fingerprint or {}
    cpu = fp.get("cpu") or {}
    topology = fp.get("topology") or {}
    flags = cpu.get("flags") or {}
    present = sorted(k for k, v in flags.items() if v) if isinstance(flags, dict) else sorted(map(str, flags))
    memory = fp.get("memory_bytes")
    return MachineFacts(
        hostname=fp.get("hostname"), cpu=cpu.get("brand"), family=_int(cpu.get("family")),
        model=_int(cpu.get("model")), flags=tuple(present), cores=_int(topology.get("physical_cores")),
        sockets=_int(topology.get("sockets")), numa_nodes=_int(topology.get("numa_nodes")),
        memory_gib=round(memory / GIB) if isinstance(memory, (int, float)) and memory > 0 else None)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def bf16_note(bf16_kernels: bool) -> str:
    """What a reader of bf16 figures from a CPU without AMX must know, by whether torch had bf16 GEMM kernels on it
    (the fingerprint's `torch_build.bf16_kernels`)."""
    if bf16_kernels:
        return ("this CPU has no AMX: every bf16 GEMM here ran on AVX-512 (or older) kernels, so no bf16 figure says "
                "anything about AMX")
    return ("this CPU has no bf16 GEMM kernels (no AVX-512, no AMX): torch emulates every bf16 GEMM on it, tens of "
            "times slower than fp32 (about 1 against 30-70 GFLOP/s a core on an AVX2 EPYC), so bf16 figures from it "
            "say nothing about a Xeon's, and its bf16 cells are unavailable unless the matrix sets emulated_bf16; "
            "its bf16 peak is the fp32 one, which bounds the emulation")
