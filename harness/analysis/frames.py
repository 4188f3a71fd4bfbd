"""A result set as pandas frames: one row per cell record (`cells.csv`), one per step (for plots only).

Configurations are told apart by their full identity (every config and launch field: the record's `match_key`, plus the
injected fault: `harness.config.identity.Configuration.grouping`), never by a fixed list of columns, so two cells that
differ only in, say, `lora_init` stay two rows; each configuration's label names every axis in which the set's
configurations differ.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis.calibration import calibration_columns
from harness.analysis.efficiency import cell_efficiency
from harness.base.errors import XeonftError
from harness.config.finetune import LATER_CONFIG_DEFAULTS
from harness.config.identity import NO_FAULT, Configuration, match_key, twin_key
from harness.measure.onednn import top_gemm
from harness.results.records import CellRecord
from harness.results.store import ResultStore

SPEC_COLUMNS = ("model", "precision", "backend", "batch_size", "gradient_accumulation_steps", "seq_len", "threads",
                "gradient_checkpointing", "attn_implementation", "lm_head", "quant", "optim", "packing", "lora_r")
LAUNCH_COLUMNS = ("pinning", "allocator", "env", "isa", "inject_fault", "ranks", "nnodes", "instrument", "replica")
# Fields that never tell two configurations apart for a reader (set by the sweep, or the same for every cell).
NOT_LABELS = {"max_steps", "save_checkpoints", "logging_steps", "eval_steps", "prompts", "repeat", "timeout_s",
              "node_rank", "rdzv_endpoint", "variables", "evaluate", "own_eval_tokens"}


def configuration(record: CellRecord) -> Configuration:
    """The record's configuration, from the match key it was stored with (a record without one, from an early
    layout, stands alone under its own key) and its injected fault."""
    return Configuration(record.match_key or record.key, record.launch_settings.get("inject_fault") or NO_FAULT)


def twin(record: CellRecord) -> str:
    """The configuration with `instrument` left out: a bare cell and its fully instrumented twin share it."""
    return Configuration(twin_key(record.spec), record.spec.launch.inject_fault).grouping


def seedless(record: CellRecord) -> str:
    """The configuration with its training seed left out: runs of several seeds are one configuration's samples of
    training randomness (the own eval loss's interval, `harness.analysis.own_eval`)."""
    spec = record.spec
    unseeded = spec.model_copy(update={"config": spec.config.model_copy(update={"seed": 0})})
    return Configuration(match_key(unseeded), spec.launch.inject_fault).grouping


def _flat_spec(record: CellRecord) -> dict[str, Any]:
    """Every field of the cell's definition, flat (config and launch fields share one namespace, as in a matrix)."""
    spec = record.spec.model_dump(mode="json")
    flat = dict(record.axes)  # what the sweep recorded of the cell's axes, under its full definition
    flat.update({k: v for k, v in spec.items() if k not in ("config", "launch")})
    flat.update(spec.get("config") or {})
    flat.update(spec.get("launch") or {})
    flat.setdefault("preset", "none")
    if isinstance(flat.get("stack"), dict):  # a library stack is known by its name (its pins are in its identity)
        flat["stack"] = flat["stack"].get("name")
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in flat.items() if k not in NOT_LABELS}


def _cores(record: CellRecord) -> int | None:
    """Physical cores the cell used, over all its ranks and nodes."""
    launch = record.launch
    world = record.result.world_size if record.result else 1
    if launch is None:
        return None
    if launch.rank_placements:
        return len(launch.rank_placements[0].cpus) * world
    if launch.placement:
        return len(launch.placement.cpus)
    threads = launch.env.get("OMP_NUM_THREADS")
    return int(threads) if threads and threads.isdigit() else None


def base_weights(model: dict[str, Any] | None) -> str | None:
    """How a cell held its frozen base's linears, where quantized: library, version and format."""
    quant = (model or {}).get("quant")
    return f"{quant['library']} {quant['version']} {quant['format']}" if quant else None


def _row(r: CellRecord, peak: dict[str, Any] | None) -> dict[str, Any]:
    cfg, launch = r.config, r.launch_settings
    res = r.result
    s = res.summary if res else None
    h = r.headline()
    mem = r.memory
    onednn = (res.onednn if res else None) or {}
    comp = (res.compile if res else None) or {}
    eff = cell_efficiency(r, peak)
    row: dict[str, Any] = {"key": r.key, "match_key": r.match_key, "identity": configuration(r).grouping,
                           "repeat": r.repeat, "status": r.status, "reason": r.reason}
    # a field that joined later is missing from earlier records: they ran at its default
    row.update({c: cfg.get(c, r.axes.get(c, LATER_CONFIG_DEFAULTS.get(c))) for c in SPEC_COLUMNS})
    row.update({c: launch.get(c, r.axes.get(c)) for c in LAUNCH_COLUMNS})
    row["preset"] = r.spec.preset
    row["pair_key"] = twin(r)
    row["seedless"] = seedless(r)
    row["seed"] = cfg.get("seed", r.spec.config.seed)
    row.update({
        "tokens_per_s": h.tokens_per_s,
        "sequences_per_s": h.sequences_per_s,
        "step_s_p50": h.step_s_p50,
        "step_s_p90": s.step_seconds_p90 if s else None,
        "step_s_cv": s.step_seconds_cv if s else None,
        "measured_steps": s.measured_steps if s else None,
        "measured_tokens": h.measured_tokens,
        "tokens_trained": getattr(s, "tokens_all_steps", None) if s else None,
        "warmup_s": s.warmup_seconds if s else None,
        "eval_s": s.eval_seconds if s else None,
        "eval_loss": h.eval_loss,
        "own_eval_loss": res.common_eval.loss if res and res.common_eval else None,
        "own_base_loss": res.common_eval.base_loss if res and res.common_eval else None,
        "own_tokens": res.common_eval.tokens_digest if res and res.common_eval else None,
        "own_reference": res.common_eval.reference_tokens if res and res.common_eval else None,
        "final_train_loss": h.final_train_loss,
        "peak_rss_gib": h.peak_rss_bytes / 2**30 if h.peak_rss_bytes is not None else None,
        "peak_uss_gib": h.peak_uss_bytes / 2**30 if h.peak_uss_bytes is not None else None,
        "peak_pss_gib": _gib(getattr(mem, "peak_pss_bytes", None)),
        "foreign_cpu_cores": mem.foreign_cpu_cores_mean if mem else None,
        "launcher_cpu_s": mem.launcher_cpu_seconds if mem else None,
        "model_tflops": eff["tflops"],
        "mfu": eff["mfu"],
        "hfu": eff["hfu"],
        "gemm_kernel": top_gemm(onednn),
        "base_weights": base_weights(res.model if res else None),
        "amx_share": onednn.get("amx_share"),
        "bf16_on_amx": onednn.get("bf16_gemm_on_amx"),
        **{f"time_{k}": v for k, v in (((res.profile if res else None) or {}).get("share") or {}).items()},
        "world_size": res.world_size if res else 1,
        "cores": _cores(r),
        "allreduce_s": s.allreduce_seconds if s else None,
        "tracker_s_per_step": s.tracker_seconds_per_step if s else None,
        "compile_s": comp.get("compile_seconds"),
        "recompiles": comp.get("recompiles"),
        "graph_breaks": comp.get("graph_breaks"),
        "compile_cache_hits": comp.get("fx_graph_cache_hits"),
        "wall_s": r.wall_seconds,
        "data_cache": r.phases.data_cache if r.phases else None,
        "skipped": ",".join(res.skipped) if res and res.skipped else None,
        **{f"phase_{k}_s": v for k, v in (r.phases.seconds() if r.phases else {}).items()},
        **calibration_columns(r),
        # a duet's figure: over the steps it ran beside its partner (None outside duets)
        "duet_tokens_per_s": r.duet.tokens_per_second if r.duet else None,
        "duet_partner": r.duet.partner if r.duet else None,
        "duet_role": r.duet.role if r.duet else None,
    })
    for k, v in _flat_spec(r).items():  # every other field of the definition, so a selector can name any of them
        row.setdefault(k, v)
    return row


def cells_frame(store: ResultStore) -> pd.DataFrame:
    """One row per cell record: its settings, status and headline numbers (the CSV users load in pandas)."""
    manifest = store.manifest()
    records = store.records()
    rows = [_row(r, manifest.peak_tflops) for r in records]
    df = pd.DataFrame(rows)
    if df.empty:
        raise XeonftError(f"result set '{store.root}' has no cells")
    labels = variant_labels(records)
    df["variant"] = [labels[configuration(r).grouping] for r in records]
    df.attrs["axes"] = manifest.axes
    return df


def variant_labels(records: list[CellRecord]) -> dict[str, str]:
    """Identity -> a label naming every field (but batch size, which plots put on the x axis) in which the
    set's configurations differ; '(one configuration)' when nothing but batch size differs."""
    flats: dict[str, dict[str, Any]] = {}
    for r in records:
        flats.setdefault(configuration(r).grouping, _flat_spec(r))
    keys = sorted({k for f in flats.values() for k in f})
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats.values()}) > 1 and k != "batch_size"]
    # the matrix's own axes first, in their order, then anything else that differs
    axes_first = [a for r in records[:1] for a in r.axes if a in varying]
    varying = axes_first + [k for k in varying if k not in axes_first]

    def name(key: str, value: Any) -> str:
        if key == "preset":
            return "recipe" if value == "none" else f"preset {value}"
        return str(value) if isinstance(value, str) and key in ("precision", "backend", "model") else f"{key}={value}"

    return {ident: " / ".join(name(k, f.get(k)) for k in varying) or "(one configuration)"
            for ident, f in flats.items()}


def steps_frame(store: ResultStore, df: pd.DataFrame) -> pd.DataFrame:
    """One row per step of every cell that ran (for plots only: steps of one run are not independent samples).
    `measured` marks the steps a statistic may use: not the timing warm-up, not a profiled step."""
    rows = []
    labels = dict(zip(df["key"], df["variant"], strict=True))
    for r in store.records(warn=False):
        res = r.result
        if res is None:
            continue
        measured = {id(st) for st in res.measured_steps()}
        bs = r.config.get("batch_size", r.axes.get("batch_size"))
        for i, st in enumerate(res.steps):
            rows.append({"key": r.key, "variant": labels.get(r.key), "batch_size": bs, "repeat": r.repeat,
                         "step": st.step, "seconds": st.seconds, "tokens": st.tokens, "loss": st.loss,
                         "warmup": i < res.summary.warmup_steps, "measured": id(st) in measured,
                         "tokens_per_s": st.tokens / st.seconds if st.seconds else None})
        for ev in res.evals:
            if "eval_loss" in ev:
                rows.append({"key": r.key, "variant": labels.get(r.key), "batch_size": bs, "repeat": r.repeat,
                             "step": ev["step"], "eval_loss": ev["eval_loss"]})
    return pd.DataFrame(rows)


def _gib(n_bytes: int | None) -> float | None:
    return n_bytes / 2**30 if n_bytes is not None else None
