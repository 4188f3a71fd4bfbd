"""The recipe's training objects (LoRA config, SFTConfig, SFTTrainer), built from a FinetuneConfig.

Kept apart from the run's bookkeeping so a sweep's worker builds exactly what `xeonft finetune` runs.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.cell import prepared
from harness.cell.attention import use_attention
from harness.cell.checkpointing import use_selective_checkpointing
from harness.cell.head import use_fused_head
from harness.cell.prompts import tokenize_example
from harness.config.finetune import FinetuneConfig
from harness.config.precision import AUTOCAST as AUTOCAST  # re-exported: bench/test_micro.py imports it here
from harness.config.precision import precision_rule, torch_dtype

# peft's names for the recipe's init choices ("default" is peft's init_lora_weights=True: B = 0, A Kaiming).
LORA_INITS: dict[str, Any] = {"olora": "olora", "pissa": "pissa", "gaussian": "gaussian", "default": True}
# Inits that rewrite the base weights, so saved adapters must be converted to apply on the original model.
MUTATING_INITS = {"olora", "pissa"}


def model_dtype(cfg: FinetuneConfig) -> torch.dtype:
    """The dtype the frozen base weights are loaded in."""
    return torch_dtype(precision_rule(cfg.precision).weights)


def compute_dtype(cfg: FinetuneConfig) -> torch.dtype:
    """The dtype the GEMMs run in: what ipex.optimize is told, and what MFU is measured against."""
    return torch_dtype(precision_rule(cfg.precision).gemm)


def load_base(cfg: FinetuneConfig, quantized: bool = True) -> Any:
    """The base model and tokenizer as the config loads them (`harness.cell.models.LoadedModel`): the precision's
    weight dtype, and with `quantized` the config's `quant` (computing in the precision's GEMM dtype); without it,
    the dense base the saved adapter applies to."""
    from harness.cell.models import resolve_model

    return resolve_model(cfg.model, model_dtype(cfg), cfg.tokenizer, cfg.trust_remote_code, seed=cfg.seed,
                         quant=cfg.quant if quantized else "none", compute=compute_dtype(cfg))


def load_ipex() -> Any:
    """Intel Extension for PyTorch, or Unavailable naming why (it is built for one torch release only)."""
    from harness.base.errors import Unavailable

    try:
        import intel_extension_for_pytorch as ipex
    except Exception as err:  # ImportError, or IPEX refusing a torch it was not built for
        why = (str(err).strip().splitlines() or [""])[-1]
        raise Unavailable(f"backend ipex: intel_extension_for_pytorch cannot load with torch {torch.__version__} "
                          f"({type(err).__name__}: {why}); run the cell in the seed-2025 environment "
                          "(env: seed-2025)") from None
    return ipex


def compile_layers(model: Any) -> int:
    """Regional compilation: torch.compile each decoder layer in place (`Module.compile`, so parameter names and
    saved adapters are unchanged). The layers share their code, so one compiled graph serves them all; the embedding,
    the LM head and trl's chunked loss stay eager. Returns the number of layers compiled."""
    from harness.base.errors import XeonftError
    from harness.cell.models import decoder_layers

    layers = decoder_layers(model)
    if layers is None:
        raise XeonftError(f"backend compile-layers: no decoder layers (a ModuleList named '...layers') in "
                          f"{type(model).__name__}")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def lora_config(cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; a float works and is recorded
        target_modules=cfg.lora_target_modules,
        lora_dropout=cfg.lora_dropout,
        bias=cfg.lora_bias,
        task_type="CAUSAL_LM",
        init_lora_weights=LORA_INITS[cfg.lora_init],
    )


def sft_config(cfg: FinetuneConfig, output_dir: Path, has_eval: bool) -> Any:
    """The recipe's SFTConfig; precision and backend are the switches a sweep turns."""
    from trl import SFTConfig

    evaluate = has_eval and cfg.eval_steps is not None
    distributed: dict[str, Any] = {}
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: DDP over gloo (oneCCL when its bindings load)
        distributed = {"ddp_backend": "ccl" if _has_oneccl() else "gloo", "ddp_find_unused_parameters": False}
    return SFTConfig(
        **distributed,
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        optim=cfg.optim,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_steps if evaluate else None,
        save_strategy="steps" if cfg.save_checkpoints else "no",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        bf16=precision_rule(cfg.precision).autocast,
        use_cpu=True,
        packing=cfg.packing,
        max_length=cfg.seq_len,
        gradient_checkpointing=cfg.gradient_checkpointing is True,  # selective: build_trainer wraps the layers
        torch_compile=cfg.backend == "compile",
        seed=cfg.seed,
        report_to="none",
        dataloader_num_workers=0,
    )


def _has_oneccl() -> bool:
    try:
        import oneccl_bindings_for_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def tokenize(ds: Any, tokenizer: Any) -> Any:
    """Alpaca rows to token ids (prompt + response + EOS); trl then packs them and skips its own tokenizing."""
    return ds.map(lambda row: tokenize_example(row, tokenizer), remove_columns=ds.column_names)


def batch_work(inputs: dict[str, Any]) -> dict[str, int]:
    """The work in one collated batch: non-padding tokens, sequences (documents), rows, token slots (padding
    included), the sum of squared document lengths (what per-document attention computes) and of squared row
    lengths (what a kernel masking a whole row computes).

    Padding-free packing flattens a batch into one row with position_ids restarting at 0 for each sequence;
    a padded batch has an attention mask. Counting pad ids instead would drop every EOS where pad == EOS.
    """
    if "attention_mask" in inputs:
        mask = inputs["attention_mask"]
        lengths = mask.sum(dim=-1).reshape(-1)
        rows, width = int(mask.shape[0]), int(mask.shape[-1])
        return {"tokens": int(lengths.sum()), "sequences": rows, "rows": rows, "slots": rows * width,
                "doc_sq": int((lengths * lengths).sum()), "row_sq": rows * width * width}
    if "position_ids" in inputs:
        pos = inputs["position_ids"].reshape(inputs["position_ids"].shape[0], -1)
        rows, width = int(pos.shape[0]), int(pos.shape[1])
        doc_sq = 0
        for row in pos:
            starts = [*torch.nonzero(row == 0).reshape(-1).tolist(), width]
            doc_sq += sum((b - a) ** 2 for a, b in itertools.pairwise(starts))
        return {"tokens": int(pos.numel()), "sequences": int((pos == 0).sum()), "rows": rows, "slots": rows * width,
                "doc_sq": doc_sq, "row_sq": rows * width * width}
    ids = inputs["input_ids"]
    rows, width = int(ids.shape[0]), int(ids.shape[-1])
    return {"tokens": int(ids.numel()), "sequences": rows, "rows": rows, "slots": rows * width,
            "doc_sq": rows * width * width, "row_sq": rows * width * width}


def _measured_trainer_class() -> type:
    from trl import SFTTrainer

    class MeasuredSFTTrainer(SFTTrainer):
        """trl's SFTTrainer, telling an observer what each micro-batch holds before training on it."""

        batch_observer: Any = None
        ipex_dtype: torch.dtype | None = None  # set: ipex.optimize model and optimizer once the optimizer exists
        prep_seconds = 0.0  # time trl spent preparing (tokenizing, packing) the datasets as the trainer was built

        def _prepare_dataset(self, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super()._prepare_dataset(*args, **kwargs)
            finally:
                self.prep_seconds += time.perf_counter() - t0

        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            optimizer = super().create_optimizer(*args, **kwargs)
            if self.ipex_dtype is not None and not getattr(self, "_ipex_done", False):
                # What transformers 4.x's use_ipex did: level O1 (weight prepacking, fused optimizer step), in place
                # so the Trainer's references to the model stay valid.
                self.model.train()  # type: ignore[union-attr]
                _, self.optimizer = load_ipex().optimize(self.model, optimizer=self.optimizer,
                                                         dtype=self.ipex_dtype, inplace=True, level="O1")
                self._ipex_done = True
                optimizer = self.optimizer
            return optimizer

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            if self.batch_observer is not None:
                t0 = time.perf_counter()
                self.batch_observer.on_batch(**batch_work(inputs))
                if hasattr(self.batch_observer, "own_seconds"):
                    self.batch_observer.own_seconds += time.perf_counter() - t0
                if not getattr(self, "_allreduce_timed", False):
                    self._allreduce_timed = time_allreduce(model, self.batch_observer)
            return super().training_step(model, inputs, num_items_in_batch)

    return MeasuredSFTTrainer


def time_allreduce(model: Any, observer: Any) -> bool:
    """Time DDP's gradient all-reduce with a communication hook that does what DDP's default does (average over
    the ranks), and tells the observer how long each bucket took from launch to completion. True when hooked."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model, DistributedDataParallel) or not hasattr(observer, "on_allreduce"):
        return False
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    def timed(state, bucket):  # DDP checks these annotations against its own types: none, rather than strings
        t0 = time.perf_counter()

        def done(fut: Any) -> Any:
            observer.on_allreduce(time.perf_counter() - t0)
            return fut.value()

        return allreduce_hook(state, bucket).then(done)

    model.register_comm_hook(None, timed)
    return True


@dataclass
class PreparedData:
    """A cell's datasets as trl prepares them, from the prepared-data cache (`harness.cell.prepared`) where both
    splits are in it (`hit`); else the keys under which the trainer's own preparation is kept (`keep`)."""

    use: str
    keys: dict[str, str] = field(default_factory=dict)
    train: Any = None
    eval: Any = None

    @property
    def hit(self) -> bool:
        return self.use == "hit"

    @classmethod
    def find(cls, args: Any, tokenizer: Any, train_ds: Any, eval_ds: Any | None, cache: bool) -> PreparedData:
        if not cache:
            return cls(use="off")
        tok = prepared.tokenizer_digest(tokenizer)
        eval_packing = args.packing if getattr(args, "eval_packing", None) is None else args.eval_packing
        keys = {"train": prepared.prep_key("train", prepared.rows_digest(train_ds), tok, args, args.packing)}
        if eval_ds is not None:
            keys["eval"] = prepared.prep_key("eval", prepared.rows_digest(eval_ds), tok, args, eval_packing)
        found = {split: prepared.load(key) for split, key in keys.items()}
        if all(ds is not None for ds in found.values()):  # both or neither: trl prepares all its splits, or none
            return cls(use="hit", keys=keys, train=found["train"], eval=found.get("eval"))
        return cls(use="miss", keys=keys)

    def keep(self, train: Any, evaluation: Any | None) -> None:
        """After a miss, the trainer's prepared splits, stored for the next cell."""
        if self.use != "miss":
            return
        for split, ds in (("train", train), ("eval", evaluation)):
            if split in self.keys and ds is not None and prepared.load(self.keys[split]) is None:
                prepared.store(self.keys[split], ds)


def build_trainer(
    cfg: FinetuneConfig, model: Any, tokenizer: Any, train_ds: Any, eval_ds: Any | None, output_dir: Path,
    callbacks: list[Any] | None = None, cache: bool | None = None,
) -> Any:
    """An SFTTrainer over a peft model (already wrapped by the caller, so it can save the initial adapter).

    A callback with an `on_batch(tokens, sequences, **work)` method is told what each micro-batch holds. The
    datasets come prepared from the prepared-data cache where it holds them (`cache`: None follows
    `XEONFT_DATA_CACHE`); the trainer's `prep_seconds` is the time preparing (or reading) them took, its
    `data_cache` hit, miss or off.
    """
    model.config.use_cache = False
    use_attention(model, cfg.attn_implementation)
    if cfg.lm_head == "fused":
        use_fused_head()
    if cfg.gradient_checkpointing == "selective":
        use_selective_checkpointing(model)  # before compiling: the compiled layer holds the checkpoint
    if cfg.backend == "compile-layers":
        compile_layers(model)
    if cfg.gradient_checkpointing is True:
        # Checkpointed blocks over frozen embeddings need inputs that require grad; trl >= 1 does this for a
        # peft model it is handed, trl 0.18 (the seed-2025 stack) only for one it wraps itself.
        model.enable_input_require_grads()
    args = sft_config(cfg, output_dir, has_eval=eval_ds is not None)
    t0 = time.perf_counter()
    data = PreparedData.find(args, tokenizer, train_ds, eval_ds, cache=prepared.enabled() if cache is None else cache)
    if data.hit:  # trl would pack the packed rows again: it is told they are ready
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        train, evaluation = data.train, data.eval
    else:
        train = tokenize(train_ds, tokenizer)
        evaluation = tokenize(eval_ds, tokenizer) if eval_ds is not None else None
    prep = time.perf_counter() - t0
    trainer = _measured_trainer_class()(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    t0 = time.perf_counter()
    data.keep(trainer.train_dataset, trainer.eval_dataset)
    trainer.prep_seconds += prep + time.perf_counter() - t0
    trainer.data_cache = data.use
    if cfg.quant != "none":  # trl casts a quantized model's adapters to bf16; xeonft keeps the precision's
        from harness.cell.quant import restore_adapters

        restore_adapters(trainer.model, torch_dtype(precision_rule(cfg.precision).adapters))
    trainer.batch_observer = next((c for c in callbacks or [] if hasattr(c, "on_batch")), None)
    if cfg.backend == "ipex":
        load_ipex()  # fail early, before the first step
        trainer.ipex_dtype = compute_dtype(cfg)
    return trainer
