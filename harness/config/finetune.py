"""The run's configuration: one validated, frozen object that the YAML recipe, CLI flags and the Python API all fill.

Flat on purpose: every field can become a matrix axis without a path syntax.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from harness.base.errors import XeonftError
from harness.base.messages import describe
from harness.base.sniff import text_problem

# fp32; bf16-autocast (fp32 weights, bf16 compute: the recipe's bf16=True); bf16 (frozen base weights in bf16,
# adapters fp32, no autocast: LoRA GEMMs run in fp32); bf16-mixed (bf16 base, fp32 adapter master weights, every
# GEMM in bf16 under autocast).
Precision = Literal["fp32", "bf16-autocast", "bf16", "bf16-mixed"]
# eager; compile (torch.compile of the whole model, through the Trainer); compile-layers (torch.compile of each
# decoder layer: regional compilation, one graph reused by every layer); ipex (ipex.optimize on model and optimizer:
# needs IPEX, which only the seed-2025 environment has)
Backend = Literal["eager", "compile", "compile-layers", "ipex"]
COMPILED = ("compile", "compile-layers")
# Fields that joined later: left out of digests and cell keys at their defaults, so earlier keys stay valid.
LATER_CONFIG_DEFAULTS: dict[str, Any] = {"lm_head": "trl", "quant": "none"}
PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
BACKENDS: tuple[str, ...] = Backend.__args__  # type: ignore[attr-defined]
Quant = Literal["none", "int8", "nf4", "fp4"]


class FinetuneConfig(BaseModel):
    """Everything that defines one fine-tuning run. Its defaults are the recipe: the published one (Lenovo Press
    LP2179, "Fine-Tuning LLMs using Intel Xeon CPUs") as xeonft runs it, and the only place its values are written.

    They live here rather than in recipes/recipe.yaml because every other reader needs them here too: a record
    written before a field joined is read back with the field's default, `FinetuneConfig(...)` from Python is the
    recipe, and the command line's flags and help come from these fields. recipe.yaml stays a shipped recipe (so
    `--config recipe` names it) and sets nothing. Where xeonft departs from the paper: the model and data
    ("default" is SmolLM2-135M-Instruct and the 999-row Alpaca demo set from PyPI packages, where the paper used
    meta-llama/Llama-3.2-1B and yahma/alpaca-cleaned from the Hub), and trust_remote_code, which the paper passes
    true and xeonft turns on only when the command line asks. The split (train_size/eval_size null) scales the
    paper's train_test_split(train_size=5000, test_size=500, seed=42) down to smaller data; seq_len is trl's
    default max_length (1024), which the paper kept; max_steps null is one epoch; threads null is one per core.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="default",
                       description="default | path/to/model.gguf | local dir | Hub id | synthetic:<shape>")
    tokenizer: str | None = Field(default=None,
                                  description="tokenizer dir or Hub id (default: the model's, or the default model's)")
    dataset: str = Field(default="default", description="default | file.json/.jsonl/.parquet/.csv | Hub dataset id")
    trust_remote_code: bool = False

    train_size: int | None = Field(default=None, ge=1)
    eval_size: int | None = Field(default=None, ge=0)
    split_seed: int = 42

    lora_r: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    lora_init: Literal["olora", "gaussian", "default", "pissa"] = Field(
        default="olora", description="the adapters' initialisation (peft's init_lora_weights)")
    lora_bias: Literal["none", "all", "lora_only"] = "none"

    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    num_train_epochs: float = Field(default=1, gt=0, description="epochs to train (default: the recipe's)")
    max_steps: int | None = Field(default=None, ge=1, description="stop after N optimizer steps (default: one epoch)")
    optim: str = Field(default="adamw_torch",
                       description="a transformers optimizer name (adamw_torch, adamw_torch_fused, ...)")
    logging_steps: int = Field(default=1, ge=1)
    eval_steps: int | None = Field(default=5, ge=1)
    save_steps: int = Field(default=100, ge=1)
    save_total_limit: int | None = 3
    save_checkpoints: bool = True
    packing: bool = True
    seq_len: int = Field(default=1024, ge=8, description="packed sequence length (SFTConfig.max_length)")
    # true: each decoder layer's forward rerun in the backward pass; selective: only its element-wise ops
    # (harness/cell/checkpointing.py); false: none
    gradient_checkpointing: bool | Literal["selective"] = True
    # sdpa (transformers' default: one row-sized block-diagonal mask for a packed row), eager, varlen (causal SDPA
    # per packed document, no mask) or docbatch (the documents padded into one batch, loop-free): cell/attention.py
    attn_implementation: Literal["sdpa", "eager", "varlen", "docbatch"] = Field(
        default="sdpa", description="sdpa (one mask per packed row), eager, varlen (SDPA per packed document) or "
        "docbatch (the documents padded into one batch)")
    # trl (its tiled log-probabilities: SFTTrainer's own fused LM head) or fused (harness/cell/head.py: one GEMM per
    # token chunk, folded in one compiled pass, the hidden-state gradient taken in the forward)
    lm_head: Literal["trl", "fused"] = Field(
        default="trl", description="trl (SFTTrainer's own LM head) or fused (one GEMM per token chunk, compiled)")
    seed: int = 42
    # the frozen base's decoder linears: none (as the precision says), int8 (LLM.int8 weights), nf4 or fp4 (4-bit
    # blocks): bitsandbytes, dequantized for every GEMM (harness/config/quant.py); embeddings and the LM head stay
    quant: Quant = Field(default="none", description="none, int8, nf4 or fp4: the frozen base's decoder linears "
                         "quantized at load (bitsandbytes); embeddings and the LM head as the precision says")

    precision: Precision = Field(default="bf16-autocast", description="fp32; bf16-autocast (fp32 weights, bf16 "
                                 "compute); bf16 (base in bf16, adapters fp32); bf16-mixed (bf16 base, fp32 adapter "
                                 "master weights, every GEMM in bf16)")
    backend: Backend = Field(default="eager", description="eager; compile (the whole model); compile-layers (each "
                             "decoder layer, one graph reused); ipex (needs IPEX: the seed-2025 environment)")
    threads: int | None = Field(default=None, ge=1)

    prompts: tuple[str, ...] = Field(default=("List a fun fact about the sun!",),
                                     description="prompt to generate for (repeatable)")
    max_new_tokens: int = Field(default=512, ge=1)

    @field_validator("prompts", mode="before")
    @classmethod
    def _one_prompt_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _selective_needs_a_whole_layer(self) -> FinetuneConfig:
        # varlen's loop breaks a compiled layer's graph at the checkpoint, which then runs eagerly around compiled
        # pieces: measured at 1.8x the memory of no checkpointing (bench/test_micro.py), the opposite of its aim
        if self.gradient_checkpointing == "selective" and self.backend == "compile-layers" \
                and self.attn_implementation == "varlen":
            raise ValueError("gradient_checkpointing selective under backend compile-layers needs a layer that "
                             "compiles whole: attn_implementation docbatch (or sdpa), not varlen")
        return self

    @model_validator(mode="after")
    def _quant_combines(self) -> FinetuneConfig:
        # what a quantized base does not combine with, said once (measured or read: docs/research/qlora-cpu.md)
        if self.quant == "none":
            return self
        if self.backend == "ipex":
            raise ValueError(f"quant {self.quant} does not combine with backend ipex: ipex.optimize repacks dense "
                             "weights, and the seed-2025 environment has no bitsandbytes")
        if self.backend in COMPILED:
            raise ValueError(f"quant {self.quant} does not combine with backend {self.backend}: bitsandbytes' "
                             "operators break the compiled graph at every linear layer")
        if self.lora_init == "pissa":
            raise ValueError(f"quant {self.quant} does not combine with lora_init pissa: PiSSA takes an SVD of the "
                             "dense weight; use olora (re-quantized by peft), gaussian or default")
        return self

    def replace(self, **changes: Any) -> FinetuneConfig:
        """A copy with some fields changed, validated like the original (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return build_config({**self.model_dump(), **changes}, source="overrides")

    def digest(self) -> str:
        """A short stable hash of the configuration, for naming and matching runs."""
        # fields that joined later are left out at their defaults, so earlier runs keep their digests
        later = {k for k, v in LATER_CONFIG_DEFAULTS.items() if getattr(self, k) == v}
        text = json.dumps(self.model_dump(mode="json", exclude=later), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


REMOTE_CODE = "trust_remote_code"


def remote_code_refusal(value: Any, where: str, kind: str) -> str | None:
    """The refusal, in its one wording, when a file people share (a config file, a recipe, a preset, a matrix)
    would turn on a model's own code: only the command line may (`--trust-remote-code`). A value is on whenever
    the config would read it as true ("true", "yes", 1, ...); a list (a matrix axis) is on when any value is."""
    values = value if isinstance(value, list) else [value]
    for one in values:
        try:
            on = one is not None and TypeAdapter(bool).validate_python(one)
        except ValidationError:
            on = False  # not a boolean at all: validation names it
        if on:
            return (f"{where}: {REMOTE_CODE} can only be turned on from the command line (--trust-remote-code), "
                    f"never by a {kind}")
    return None


def explain(err: ValidationError, source: str, known: Any = None) -> str:
    """pydantic's report as one line per problem, each naming the source and the key."""
    known = FinetuneConfig.model_fields if known is None else known
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if not e["loc"]:  # a rule across keys: the message names them
            lines.append(f"{source}: {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{where}' (known keys: {', '.join(known)})")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where}: {msg} (got {describe(e.get('input'))})")
    return "\n".join(lines)


def build_config(values: dict[str, Any], source: str = "config") -> FinetuneConfig:
    """Validate a mapping into a FinetuneConfig, turning pydantic's report into lines that name each bad key."""
    try:
        return FinetuneConfig(**values)
    except ValidationError as err:
        raise XeonftError(explain(err, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping safely (no Python object tags), naming the file in every error: its encoding, the line
    and column where it stops being YAML, or what it holds instead of a mapping."""
    p = Path(path)
    if p.is_dir():
        raise XeonftError(f"{p} is a folder, not a YAML file")
    if not p.is_file():
        raise XeonftError(f"config file not found: {p}")
    problem = text_problem(p)
    if problem:
        raise XeonftError(f"{p} {problem}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise XeonftError(f"{p}: not valid YAML: {where}{what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XeonftError(f"{p}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def shipped_recipes() -> list[str]:
    """Names of the recipe files shipped inside the package (usable as `--config NAME`)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("harness.config.recipes").iterdir()
                  if p.name.endswith(".yaml"))


def _shipped(name: str) -> dict[str, Any]:
    text = resources.files("harness.config.recipes").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def recipe_defaults() -> dict[str, Any]:
    """The recipe's values: FinetuneConfig's defaults."""
    return FinetuneConfig().model_dump()


def _read_overlay(name: str | Path, base_dir: Path | None) -> dict[str, Any]:
    if base_dir is not None and (base_dir / name).is_file():
        return read_yaml(base_dir / name)
    if not Path(name).exists() and str(name) in shipped_recipes():
        return _shipped(str(name))
    if Path(name).suffix in (".yaml", ".yml") or "/" in str(name):
        return read_yaml(name)  # names the missing file
    raise XeonftError(f"'{name}' is neither a YAML file nor a shipped recipe ({', '.join(shipped_recipes())})")


def overlay_values(name: str | Path, base_dir: Path | None = None, kind: str = "preset") -> dict[str, Any]:
    """A recipe file's (or shipped recipe's) own keys, without the defaults under them: a preset to layer on top.
    `kind` says what the file is to the caller (preset, recipe, config file), for the remote-code refusal."""
    values = _read_overlay(name, base_dir)
    refusal = remote_code_refusal(values.get(REMOTE_CODE), str(name), kind)
    if refusal:
        raise XeonftError(refusal)
    return values


def base_values(path: str | Path | None = None, kind: str = "config file") -> tuple[dict[str, Any], str]:
    """A YAML file's (or a shipped recipe's) keys over the recipe (the defaults, which validation fills in), and
    a name for error messages."""
    if path is None:
        return {}, "the recipe"
    return overlay_values(path, kind=kind), str(path) if Path(path).exists() else f"{path}.yaml"


def load_config(path: str | Path | None = None, preset: str | None = None, **overrides: Any) -> FinetuneConfig:
    """Recipe defaults, then a YAML file's (or shipped recipe's) keys, then a preset's (e.g. 'fast'), then
    overrides (None means 'not given')."""
    values, source = base_values(path)
    if preset:
        values.update(overlay_values(preset))
        source += f" + {preset}"
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        base = build_config(values, source=source)  # name the file when the file is at fault
        return base.replace(**given)
    return build_config(values, source=source)
