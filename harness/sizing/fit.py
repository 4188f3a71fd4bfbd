"""Fits over the probes: peak memory against tokens per step (a fixed part plus a part per token), broken down
into weights, adapters and optimizer state, and activations (analytic beside measured); and throughput against
cores (Amdahl's law), for questions about more cores than this machine has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from harness.config.precision import BYTES, precision_rule
from harness.config.quant import quant_rule
from harness.measure.flops import lora_parameters
from harness.measure.shapes import SHAPE_KEYS, block_linears


@dataclass(frozen=True)
class MemoryFit:
    """peak bytes = fixed + per_token x tokens per step, by least squares over the probes that trained."""

    fixed: float
    per_token: float
    fixed_se: float | None
    per_token_se: float | None
    r2: float | None
    n: int

    def predict(self, tokens: float) -> float:
        return self.fixed + self.per_token * tokens

    def max_tokens(self, budget: float, margin: float = 0.0) -> float:
        """Tokens per step whose predicted peak leaves `margin` of `budget` free (0 when even none fits)."""
        if self.per_token <= 0:
            return math.inf if self.fixed <= budget * (1 - margin) else 0.0
        return max(0.0, (budget * (1 - margin) - self.fixed) / self.per_token)


def fit_memory(tokens: list[float], peaks: list[float]) -> MemoryFit | None:
    """Least squares over (tokens per step, peak bytes); None with fewer than two distinct token counts."""
    if len(set(tokens)) < 2:
        return None
    if len(tokens) == 2:
        (x0, x1), (y0, y1) = tokens, peaks
        slope = (y1 - y0) / (x1 - x0)
        return MemoryFit(fixed=y0 - slope * x0, per_token=slope, fixed_se=None, per_token_se=None, r2=None, n=2)
    r = stats.linregress(np.asarray(tokens, float), np.asarray(peaks, float))
    return MemoryFit(fixed=float(r.intercept), per_token=float(r.slope), fixed_se=float(r.intercept_stderr),
                     per_token_se=float(r.stderr), r2=float(r.rvalue ** 2), n=len(tokens))


class Breakdown(BaseModel):
    """Analytic bytes by part, and where there is a memory fit its measured parts (keys set only then)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights_bytes: int
    adapters_optimizer_bytes: int
    activations_bytes_per_token: int
    logits_bytes_per_token: int
    # a quantized base: what the same weights take dense, at the precision's width (for "fits with nf4, not dense")
    dense_weights_bytes: int | None = None
    runtime_bytes: float | None = None
    measured_fixed_bytes: float | None = None
    measured_bytes_per_token: float | None = None


def weights_bytes(model: dict[str, Any], precision: str, quant: str = "none") -> int:
    """The frozen base's bytes: every parameter at the precision's stored width, except the decoder linears of a
    quantized base, at its format's bytes per weight (harness.config.quant); embeddings, norms and the LM head
    stay at the precision's width."""
    width = precision_rule(precision).weight_bytes
    rule = quant_rule(quant)
    if rule is None:
        return int(model["parameters"] * width)
    linears = model["num_hidden_layers"] * sum(i * o for i, o in block_linears(model).values())
    return int((model["parameters"] - linears) * width + linears * rule.weight_bytes)


def breakdown(model: dict[str, Any], precision: str, lora_r: int, targets: Any, checkpointing: bool | str,
              fit: MemoryFit | None, quant: str = "none") -> Breakdown | None:
    """Analytic bytes by part, beside the measured fit. Weights: every parameter at its stored width (a quantized
    base's decoder linears at its format's, `weights_bytes`); adapters:
    LoRA weights, gradients and AdamW's two moments in the adapters' dtype; activations per token: what the
    backward pass keeps, in the GEMMs' dtype (each block's input under checkpointing, plus one block recomputed;
    every block's intermediate tensors without; its GEMM and attention outputs under selective checkpointing), the
    logits (fp32 and their gradient, a bf16 copy under autocast). The runtime (Python, torch, libraries, allocator
    slack) is what the measured fixed part leaves. The widths are the precision's (harness.config.precision)."""
    if any(model.get(k) is None for k in SHAPE_KEYS) or not model.get("parameters"):
        return None
    h, layers, inter, vocab = (model[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                                  "vocab_size"))
    rule = precision_rule(precision)
    act_bytes = rule.activation_bytes
    weights = weights_bytes(model, precision, quant)
    adapters = lora_parameters(model, lora_r, targets) * rule.adapter_bytes
    block = (10 * h + 3 * inter) * act_bytes  # norms, q/k/v/o, rotary, MLP gate/up/act/down, residuals
    if checkpointing == "selective":
        blocks = layers * (7 * h + 2 * inter) * act_bytes  # input, q/k/v/o, attention, gate/up, down
    else:
        blocks = (layers * h * act_bytes + block) if checkpointing else layers * block
    logits = vocab * (4 + 4 + (BYTES["bf16"] if rule.autocast else 0))
    analytic = Breakdown(weights_bytes=weights, adapters_optimizer_bytes=adapters,
                         activations_bytes_per_token=blocks + logits, logits_bytes_per_token=logits,
                         **({"dense_weights_bytes": weights_bytes(model, precision)} if quant != "none" else {}))
    if fit is None:
        return analytic
    # the runtime: the measured fixed part less the analytic parts
    return analytic.model_copy(update={"runtime_bytes": fit.fixed - weights - adapters,
                                       "measured_fixed_bytes": fit.fixed, "measured_bytes_per_token": fit.per_token})


@dataclass(frozen=True)
class Scaling:
    """Amdahl's law, tokens/s at c cores = t1 / (serial + (1 - serial) / c), fitted over cores measured here."""

    t1: float
    serial: float
    cores_measured: tuple[int, ...]

    def predict(self, cores: float) -> float:
        return self.t1 / (self.serial + (1 - self.serial) / cores)


def fit_scaling(cores: list[int], tokens_per_second: list[float]) -> Scaling | None:
    """Least squares of 1/throughput against 1/cores (linear in Amdahl's law); None with one core count only.
    The serial share is kept in [0, 1]: a super-linear or inverted measurement says nothing beyond its range."""
    if len(set(cores)) < 2:
        return None
    x = 1 / np.asarray(cores, float)
    y = 1 / np.asarray(tokens_per_second, float)
    slope, intercept = np.polyfit(x, y, 1)  # y = a + b x, with a = serial / t1 and b = (1 - serial) / t1
    t1 = 1 / float(slope + intercept)
    serial = min(1.0, max(0.0, float(intercept) * t1))
    return Scaling(t1=t1, serial=serial, cores_measured=tuple(sorted(set(cores))))
