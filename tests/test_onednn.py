"""Proof of kernels: oneDNN's verbose log captured, parsed, and the ISA ceiling honoured per cell."""

from __future__ import annotations

import pytest
import torch

from harness.analysis.frames import cells_frame
from harness.analysis.overhead import flags
from harness.launch.sweep import run_sweep
from harness.measure.onednn import capture_verbose, summarize
from harness.measure.peak import bf16_kernels
from tests.conftest import disk_manifest, disk_records, tiny_matrix

AMX_LINES = [
    "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 and AMX support",
    "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16::blocked:ab::f0 "
    "wei:bf16::blocked:ab::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,2048x2048:2048x2048,3.0",
    "onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx512_core_bf16,forward_training,src:bf16::blocked"
    ":ab::f0 wei:bf16::blocked:ab::f0,,,mb8ic64oc64,1.0",
    "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:ab::f0 dst:bf16::blocked:ab::f0"
    ",,,64x64,0.5",
]


def test_amx_share_is_gemm_time_on_amx_kernels():
    s = summarize(AMX_LINES)
    assert s["detected_isa"].endswith("AMX support")
    assert s["gemm_ms"] == pytest.approx(4.0) and s["amx_share"] == pytest.approx(0.75)
    assert s["bf16_gemm_calls"] == 2 and s["bf16_gemm_on_amx"]
    assert [k["impl"] for k in s["kernels"]] == ["brg_matmul:avx10_1_512_amx", "brgemm:avx512_core_bf16", "jit:uni"]


OLDER_LINES = [  # oneDNN 2.x (onednn_verbose without a version field, src_bf16) and DNNL 1.x with a timestamp
    "onednn_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
    "onednn_verbose,exec,cpu,inner_product,brgemm:avx512_core_amx_bf16,forward_training,src_bf16::blocked:ab:f0 "
    "wei_bf16:p:blocked:AB16b64a2b:f0 bia_f32::blocked:a:f0 dst_bf16::blocked:ab:f0,,,mb1024ic4096oc4096,3.0",
    "dnnl_verbose,1700000000.5,exec,cpu,matmul,gemm:jit,undef,src_f32::blocked:ab:f0 wei_f32::blocked:ab:f0 "
    "dst_f32::blocked:ab:f0,,,64x64:64x64,1.0",
]


def test_older_verbose_formats_of_the_seed_stack_and_ipex_are_understood():
    s = summarize(OLDER_LINES)
    assert s["detected_isa"].startswith("Intel AVX-512")
    assert s["bf16_gemm_calls"] == 1 and s["bf16_gemm_on_amx"] and s["amx_share"] == pytest.approx(0.75)
    assert {k["src_dtype"] for k in s["kernels"]} == {"bf16", "f32"}


def test_a_real_bf16_matmul_is_captured_with_its_kernel():
    """Where torch has bf16 kernels the one matmul is found with its kernel; where it emulates bf16 (an AVX2 CPU)
    oneDNN runs nothing, and the capture must say so rather than invent a kernel."""
    a = torch.randn(128, 128, dtype=torch.bfloat16)
    with capture_verbose() as lines:
        torch.mm(a, a)
    s = summarize(lines)
    if not bf16_kernels():
        assert s["bf16_gemm_calls"] == 0 and s["kernels"] == [] and not s["bf16_gemm_on_amx"]
        return
    assert s["bf16_gemm_calls"] >= 1 and s["detected_isa"]
    (kernel,) = [k for k in s["kernels"] if k["kind"] == "matmul"]
    assert kernel["src_dtype"] == "bf16" and kernel["count"] >= 1
    assert s["bf16_gemm_on_amx"] == ("amx" in kernel["impl"])


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no bf16 GEMM kernels: oneDNN runs no bf16 GEMM "
                                                "for an ISA ceiling to cap")
def test_the_isa_axis_caps_onednn_and_the_probe_shows_it(rows_file, tokenizer_dir, tmp_path):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["bf16"], "isa": ["default", "avx512_core"]},
                    exclude=[], peak=True)
    store = run_sweep(m, out=tmp_path / "isa")
    by_isa = {r["axes"]["isa"]: r for r in disk_records(store)}
    assert by_isa["avx512_core"]["launch"]["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    assert "ONEDNN_MAX_CPU_ISA" not in by_isa["default"]["launch"]["env"]
    capped = by_isa["avx512_core"]["result"]["onednn"]
    free = by_isa["default"]["result"]["onednn"]
    assert capped["bf16_gemm_calls"] > 0 and free["bf16_gemm_calls"] > 0
    assert not capped["bf16_gemm_on_amx"]  # AMX is above the AVX512_CORE ceiling
    cpu = disk_manifest(store)["fingerprint"]["cpu"]["flags"]
    if cpu["avx512_bf16"] or cpu["amx_bf16"]:  # the ceiling takes away bf16 instructions this CPU has
        assert {k["impl"] for k in capped["kernels"]} != {k["impl"] for k in free["kernels"]}
    peak = disk_manifest(store)["peak_tflops"]
    assert peak["bf16"] > 0 and peak["fp32"] > 0
    df = cells_frame(store)
    assert (df["mfu"] > 0).all() and (df["mfu"] < 1).all()
    has_amx = disk_manifest(store)["fingerprint"]["cpu"]["amx"]
    flagged = flags(df, has_amx)
    # on an AMX CPU every bf16 cell that missed AMX is flagged; without AMX the report says so once instead
    expected = int((df["bf16_on_amx"] == False).sum()) if has_amx else 0  # noqa: E712
    assert len(flagged) == expected
