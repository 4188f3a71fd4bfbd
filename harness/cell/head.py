"""The LM head and the loss as one chunked region, for CPUs (`lm_head: fused`).

trl (>= 1.x) never builds the `tokens x vocab` logits: `model(..., fused_lm_head=True)` projects through the head in
tiles and folds each into online-logsumexp statistics. Off Triton devices its tiles are 4,096 tokens x 32,768 vocab
entries folded by a dozen eager fp32 passes, and its backward recomputes every tile and adds the gradient GEMMs in
fp32 (an fp32 copy of each head slice, every step). On a CPU that is a third GEMM for the head, fp32 GEMMs at half
the bf16 rate, and about 2 GB of transient tiles on the 1B shape.

This replaces trl's tile function (same arguments, same outputs) with one that:
- takes a token chunk sized so its logits stay near `CHUNK_BYTES` (flat in the number of tokens per step), and
  multiplies it by the whole head in one GEMM in the compute dtype (oneDNN accumulates in fp32 inside it);
- folds the chunk's logits in one compiled pass (log-sum-exp, target log-probability, entropy, top-1) and, when a
  gradient will be needed, writes the logits' gradient in the same pass;
- takes the gradient with respect to the hidden states in the forward pass (`d log p_i / d h_i`, one row a token:
  each token's log-probability depends on its own hidden state only, so this is exact for any incoming gradient),
  so the backward is a product, not a recomputation. The gradient of the entropy or of the head's own weight (never
  needed for LoRA, whose head is frozen) falls back to recomputing the chunks.
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK_BYTES = 64 << 20  # logits of one token chunk in the compute dtype
MIN_CHUNK, MAX_CHUNK = 64, 4096


def chunk_tokens(vocab: int, itemsize: int) -> int:
    """Tokens per chunk: as many as keep the chunk's logits near CHUNK_BYTES, rounded down to a multiple of 64."""
    n = CHUNK_BYTES // max(1, vocab * itemsize)
    return int(min(MAX_CHUNK, max(MIN_CHUNK, n // 64 * 64)))


def _fold(logits: torch.Tensor, targets: torch.Tensor, scale: float, softcap: float, inv_t: float,
          has_softcap: bool, want_grad: bool) -> tuple[torch.Tensor, ...]:
    """One chunk's statistics from its logits, in fp32: log p(target), entropy, whether the target is the first
    argmax, and (want_grad) d log p(target) / d logits in the logits' dtype."""
    y = logits.float() * scale
    if has_softcap:
        t = torch.tanh(y / softcap)
        z = softcap * t * inv_t
    else:
        z = y * inv_t
    m = z.amax(-1, keepdim=True)
    e = torch.exp(z - m)
    s = e.sum(-1, keepdim=True)
    lse = m + torch.log(s)
    target_z = z.gather(-1, targets.unsqueeze(-1))
    logp = (target_z - lse).squeeze(-1)
    p = e / s
    entropy = (lse - (p * z).sum(-1, keepdim=True)).squeeze(-1)
    top1 = z.argmax(-1) == targets
    if not want_grad:
        return logp, entropy, top1
    onehot = torch.arange(z.shape[-1], device=z.device) == targets.unsqueeze(-1)
    g = (onehot.float() - p) * (inv_t * scale)
    if has_softcap:
        g = g * (1 - t * t)
    return logp, entropy, top1, g.to(logits.dtype)


_compiled: dict[bool, Any] = {}


def fold(logits: torch.Tensor, targets: torch.Tensor, scale: float, softcap: float, inv_t: float,
         has_softcap: bool, want_grad: bool) -> tuple[torch.Tensor, ...]:
    """`_fold` compiled by Inductor into a few fused loops over the chunk, instead of a dozen eager passes."""
    fn = _compiled.get(want_grad)
    if fn is None:
        fn = _compiled[want_grad] = torch.compile(_fold, dynamic=True)
    return fn(logits, targets, scale, softcap, inv_t, has_softcap, want_grad)


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype


class FusedLogProb(torch.autograd.Function):
    """Per-token log-probabilities of `hidden @ weight.T` (+ bias), with trl's `ChunkedLogProbFunction` arguments
    and outputs: (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1); the middle two are not computed, and
    `chunk_size` (trl's vocabulary tile width) is not used: each chunk spans the whole vocabulary. An fp32 head under
    autocast is cast to bf16 once a call (one head-sized copy); the fast preset's bf16 weights need none."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, temperature: float, chunk_size: int,
                final_logit_softcapping: float | None = None, logit_scale: float = 1.0,
                outputs: tuple[str, ...] = ("entropy", "is_top1")) -> tuple[Any, ...]:
        ctx.set_materialize_grads(False)
        unsupported = {"log_sum_sq_probs", "mean_logits"} & set(outputs)
        if unsupported:
            raise NotImplementedError(f"lm_head fused does not compute {sorted(unsupported)}")
        dtype = _compute_dtype(hidden)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        args = (float(logit_scale), float(final_logit_softcapping or 1.0), 1.0 / temperature,
                final_logit_softcapping is not None)
        want_grad = ctx.needs_input_grad[0]
        n_tok = hidden.shape[0]
        step = chunk_tokens(w.shape[0], w.element_size())
        logp = hidden.new_empty(n_tok, dtype=torch.float32)
        entropy = hidden.new_empty(n_tok, dtype=torch.float32)
        top1 = hidden.new_empty(n_tok, dtype=torch.bool)
        d_hidden = hidden.new_empty(hidden.shape, dtype=dtype) if want_grad else None
        for a in range(0, n_tok, step):
            h = hidden[a:a + step].to(dtype)
            logits = torch.nn.functional.linear(h, w, b)
            out = fold(logits, targets[a:a + step], *args, want_grad)
            logp[a:a + step], entropy[a:a + step], top1[a:a + step] = out[0], out[1], out[2]
            if d_hidden is not None:
                torch.mm(out[3], w, out=d_hidden[a:a + step])
        ctx.save_for_backward(hidden, weight, bias, targets, entropy, d_hidden)
        ctx.args = args
        ctx.mark_non_differentiable(top1)
        return (logp, entropy if "entropy" in outputs else None, None, None,
                top1 if "is_top1" in outputs else None)

    @staticmethod
    def backward(ctx: Any, grad_logp: torch.Tensor | None, grad_entropy: torch.Tensor | None,
                 *_: Any) -> tuple[Any, ...]:
        hidden, weight, bias, targets, entropy, d_hidden = ctx.saved_tensors
        need_w, need_b = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        nones = (None,) * 6
        if grad_entropy is None and not need_w and not need_b:
            if grad_logp is None or d_hidden is None:
                return (None, None, None, *nones)
            grad = (grad_logp.unsqueeze(-1) * d_hidden.float()).to(hidden.dtype)
            return (grad, None, None, *nones)
        return (*_recompute(ctx, hidden, weight, bias, targets, entropy, grad_logp, grad_entropy), *nones)


def _recompute(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               targets: torch.Tensor, entropy: torch.Tensor, grad_logp: torch.Tensor | None,
               grad_entropy: torch.Tensor | None) -> tuple[Any, Any, Any]:
    """The general backward, chunk by chunk again, in eager fp32: the entropy's gradient, the head's weight and
    bias gradients. Rare (a frozen head and a loss of log-probabilities only need none of it)."""
    scale, softcap, inv_t, has_softcap = ctx.args
    w = weight.float()
    gh = torch.zeros(hidden.shape, dtype=torch.float32) if ctx.needs_input_grad[0] else None
    gw = torch.zeros(weight.shape, dtype=torch.float32) if ctx.needs_input_grad[1] else None
    gb = torch.zeros(bias.shape, dtype=torch.float32) if bias is not None and ctx.needs_input_grad[2] else None
    step = chunk_tokens(weight.shape[0], 4)
    for a in range(0, hidden.shape[0], step):
        h = hidden[a:a + step].float()
        y = torch.nn.functional.linear(h, w, bias.float() if bias is not None else None) * scale
        t = torch.tanh(y / softcap) if has_softcap else None
        z = (softcap * t if t is not None else y) * inv_t
        logp_all = torch.log_softmax(z, -1)
        p = logp_all.exp()
        g = torch.zeros_like(z)
        if grad_logp is not None:
            onehot = torch.nn.functional.one_hot(targets[a:a + step], z.shape[-1]).float()
            g += grad_logp[a:a + step].float().unsqueeze(-1) * (onehot - p)
        if grad_entropy is not None:
            g -= grad_entropy[a:a + step].float().unsqueeze(-1) * p * (logp_all + entropy[a:a + step].unsqueeze(-1))
        g = g * inv_t
        if t is not None:
            g = g * (1 - t * t)
        g = g * scale
        if gh is not None:
            gh[a:a + step] = g @ w
        if gw is not None:
            gw += g.t() @ h
        if gb is not None:
            gb += g.sum(0)
    return (gh.to(hidden.dtype) if gh is not None else None, gw.to(weight.dtype) if gw is not None else None,
            gb.to(bias.dtype) if gb is not None and bias is not None else None)


def use_fused_head() -> None:
    """Have trl's fused LM head (which SFTTrainer adds to every model it trains) call FusedLogProb. trl looks the
    function up in `trl.trainer.utils` on every call; a cell is its own process, so the switch stays in it."""
    from harness.base.errors import Unavailable

    try:
        import trl.trainer.utils as trl_utils
    except ImportError as err:
        raise Unavailable(f"lm_head fused needs trl's fused LM head ({err})") from None
    if not hasattr(trl_utils, "_ChunkedLogProbFunction"):
        import trl

        raise Unavailable(f"lm_head fused needs trl's fused LM head (trl >= 1.x); this environment has trl "
                          f"{trl.__version__}")
    setattr(trl_utils, "_ChunkedLogProbFunction", FusedLogProb)  # noqa: B010  (a module global, on purpose)
