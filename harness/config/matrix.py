"""Matrix files: named axes over the recipe, validated up front and expanded into frozen cell specs.

A matrix is YAML:

    name: default                # the result set's name (results/<name>/)
    recipe: quick                # base config: a shipped recipe name or a YAML file (optional)
    fixed: {model: default}      # FinetuneConfig keys (or launcher settings) for every cell
    axes:                        # each a non-empty list; the cells are their product
      precision: [fp32, bf16-autocast, bf16]
      batch_size: [2, 4]
      pinning: [none, cores]
    exclude: [{precision: fp32, batch_size: 4}]
    repeats: 1                   # repeats are interleaved: every cell once, then again; or `auto` (or
                                 # {min: 3, max: 8, target: 0.03, budget: 30m}): rounds until every
                                 # configuration's 95% interval is within `target` of its median
    order: shuffled              # each round's cells in an order of its own, drawn from a recorded seed
                                 # ({shuffle: true, seed: 7} fixes the seed; `fixed` runs them as listed)
    measure: {warmup_steps: 1, steps: 4}   # evaluate: first (repeat 0 only, the default) or every (each run)
    design: solo                 # or duet: each configuration runs at the same time as the first one, each on
                                 # half the cores, halves swapped from one duet to the next; verdicts are the
                                 # ratios within duets (`repeats` is then the duets per configuration)
    timeout_s: 1800              # per cell
    variables: {ONEDNN_DEFAULT_FPMATH_MODE: any}   # extra environment variables for every cell

Any FinetuneConfig field can be an axis, and so can `preset`: a shipped recipe name or a YAML file layered over
the recipe and `fixed` (`none` layers nothing), so that a tuned preset and the recipe run side by side. So can the
launcher's own settings: pinning, allocator, env (a library environment made by `xeonft env create`; `default` is
xeonft's own interpreter), isa (oneDNN's ISA ceiling), ranks (data-parallel processes per node, launched by
torchrun), nnodes / node_rank / rdzv_endpoint (several machines), instrument (full | bare), inject_fault (crash,
hang, oom, slow, slow:N%) and replica (a label that changes nothing: `replica: [a, b]` is an A/A pair).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.base.errors import XeonftError
from harness.base.messages import describe
from harness.base.secrets import is_secret
from harness.base.units import parse_duration
from harness.config.finetune import (
    REMOTE_CODE,
    FinetuneConfig,
    base_values,
    build_config,
    explain,
    overlay_values,
    read_yaml,
    remote_code_refusal,
)
from harness.config.identity import store_key
from harness.config.spec import LAUNCH_KEYS, CellSpec, Evaluate, LaunchSettings

PRESET_KEY = "preset"
CONFIG_KEYS = tuple(FinetuneConfig.model_fields)
# Set by the sweep itself for every cell: a matrix that sets them is refused, not silently overridden.
MANAGED_KEYS = ("max_steps", "save_checkpoints", "logging_steps")
SWEEP_DEFAULTS = ("eval_steps", "prompts")  # one eval after the measured steps, no generations, unless set
Design = Literal["solo", "duet"]




class Measure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_steps: int = Field(default=1, ge=0)  # timing warm-up: steps run but not timed (not the LR warm-up)
    steps: int = Field(default=4, ge=1)
    profile: bool = False  # one extra step after the measured ones, under torch.profiler
    # which runs evaluate: a configuration's first (repeat 0), or every run; the measured steps are the same
    evaluate: Evaluate = "first"


class AutoRepeats(BaseModel):
    """`repeats: auto`: interleaved rounds until every configuration's 95% interval of throughput is within
    `target` of its median (relative half-width), at least `min` and at most `max` runs, within `budget`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: bool = True
    min: int = Field(default=3, ge=2)
    max: int = Field(default=8, ge=2)
    target: float = Field(default=0.03, gt=0, lt=1)
    budget: float | None = Field(default=None, gt=0)  # seconds for the whole sweep ("30m", "2h" in YAML)

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _bounds(self) -> AutoRepeats:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class RunOrder(BaseModel):
    """The order of the cells within each round: shuffled (the default: a machine that drifts through a sweep
    then drifts across configurations evenly, not always against the one listed first) or as listed. The seed
    is drawn at a sweep's start where the matrix gives none, and recorded in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shuffle: bool = True
    seed: int | None = Field(default=None, ge=0)


class MatrixFile(BaseModel):
    """The YAML document's shape, before expansion."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    recipe: str | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    repeats: int | AutoRepeats = Field(default=1)
    order: RunOrder = RunOrder()
    measure: Measure = Measure()
    timeout_s: float = Field(default=1800, gt=0)
    disturbance_cores: float = Field(default=0.25, gt=0)
    peak: bool = True  # measure the GEMM peak before the cells (MFU is reported against it)
    calibration: bool = True  # a short fixed GEMM workload right before and after every cell (recorded beside it)
    design: Design = "solo"  # duet: two cells at once on disjoint halves of the cores (harness.launch.duet)
    # bf16 cells on a CPU without bf16 GEMM kernels, where torch emulates them tens of times slower than fp32:
    # unset, they run where XEONFT_EMULATED_BF16=1 (the tests' tiny models) and are `unavailable` otherwise
    emulated_bf16: bool | None = None
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, value: Any) -> Any:
        """An integer, `auto`, or the auto settings as a mapping; one message for anything else."""
        if value == "auto":
            return AutoRepeats()
        if isinstance(value, dict):
            try:
                return AutoRepeats(**value)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(map(str, first["loc"]))
                msg = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where}: {msg}" if where else msg) from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("expected a number of runs (1 or more), 'auto', or {min, max, target, budget}")
        return value

    @field_validator("order", mode="before")
    @classmethod
    def _order(cls, value: Any) -> Any:
        """`shuffled`, `fixed`, or {shuffle, seed}."""
        if value in ("shuffled", "fixed"):
            return {"shuffle": value == "shuffled"}
        if not isinstance(value, dict):
            raise ValueError("expected 'shuffled', 'fixed' or {shuffle: true|false, seed: N}")
        return value


class Matrix(BaseModel):
    """An expanded matrix: its cells in run order (repeats interleaved), plus the raw document."""

    name: str
    cells: list[CellSpec]
    axes: dict[str, list[Any]]
    document: dict[str, Any]
    disturbance_cores: float
    peak: bool = True
    calibration: bool = True
    auto: AutoRepeats | None = None  # adaptive repeats: `cells` then holds the first `auto.min` rounds
    order: RunOrder = RunOrder()
    # duet: `cells[0]`'s configuration is the reference every other one runs beside (harness.launch.duet)
    design: Design = "solo"
    emulated_bf16: bool | None = None  # run bf16 cells where torch emulates bf16 (None: XEONFT_EMULATED_BF16 says)

    def with_memory_limit(self, limit: str | int) -> Matrix:
        """Every cell capped at `limit` (the command line's --memory-limit, over the matrix's own)."""
        try:
            cells = [c.model_copy(update={"launch": LaunchSettings(**{**c.launch.model_dump(), "memory_limit": limit})})
                     for c in self.cells]
        except ValidationError as err:
            raise XeonftError(f"--memory-limit: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return self.model_copy(update={"cells": cells})

    def for_node(self, node_rank: int) -> Matrix:
        """The same matrix as run by machine `node_rank` of a multi-node sweep."""
        if not any(c.launch.nnodes > 1 for c in self.cells):
            raise XeonftError("--node-rank needs a matrix with nnodes > 1")
        if any(node_rank >= c.launch.nnodes for c in self.cells):
            raise XeonftError(f"node rank {node_rank} is not below nnodes")
        cells = [c.model_copy(update={"launch": c.launch.model_copy(update={"node_rank": node_rank})})
                 for c in self.cells]
        return self.model_copy(update={"cells": cells})


def _check_names(where: str, keys: list[str], errors: list[str]) -> None:
    for key in keys:
        if key in MANAGED_KEYS:
            errors.append(f"{where}: '{key}' is set by the sweep (use measure: warmup_steps/steps)")
        elif key == "duet":
            errors.append(f"{where}: 'duet' is set by the matrix's design (design: duet)")
        elif key not in CONFIG_KEYS and key not in LAUNCH_KEYS and key != PRESET_KEY:
            errors.append(f"{where}: unknown key '{key}' "
                          f"(known: {', '.join(CONFIG_KEYS + LAUNCH_KEYS + (PRESET_KEY,))})")


def _excluded(values: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    def hit(rule_value: Any, value: Any) -> bool:
        return value in rule_value if isinstance(rule_value, list) else value == rule_value

    return any(all(hit(v, values.get(k)) for k, v in rule.items()) for rule in rules)


def _check_safety(m: MatrixFile, source: str, errors: list[str]) -> None:
    """A matrix is a file people share: it may not carry a secret, nor turn on remote code."""
    for name in m.variables:
        if is_secret(name):
            errors.append(f"{source}: variables: '{name}' looks like a secret; pass it through the environment "
                          "instead (xeonft scrubs such values from everything it writes)")
    refusal = remote_code_refusal([m.fixed.get(REMOTE_CODE), *m.axes.get(REMOTE_CODE, [])], source, "matrix")
    if refusal:
        errors.append(refusal)


def _check_duet(m: MatrixFile, source: str, errors: list[str]) -> None:
    """What a duet cannot be: adaptive (its unit is a pair run at once, planned up front), several processes per
    cell, or pinned other than to its half of the cores."""
    if isinstance(m.repeats, AutoRepeats):
        errors.append(f"{source}: design: duet takes a fixed number of repeats (the duets per configuration), "
                      "not auto")
    for key in ("ranks", "nnodes"):
        if any(int(v) > 1 for v in [m.fixed.get(key, 1), *m.axes.get(key, [])] if isinstance(v, int)):
            errors.append(f"{source}: design: duet runs each cell as one process on half the cores; {key} above 1 "
                          "does not combine with it")
    if any(v not in ("none", "cores") for v in [m.fixed.get("pinning", "none"), *m.axes.get("pinning", [])]):
        errors.append(f"{source}: design: duet pins each cell to its half of the cores; pinning "
                      "'numa' does not combine with it")
    if m.calibration and "calibration" in m.model_fields_set:
        errors.append(f"{source}: design: duet has no calibration beside its cells (the two cells of a duet are "
                      "each other's measure of the machine); leave calibration out")


MAX_CELLS = 10_000  # combinations of the axes a matrix may expand to (before exclusions and repeats)


def parse_matrix(doc: dict[str, Any], source: str = "matrix", base_dir: Path | None = None,
                 trust_remote_code: bool = False) -> Matrix:
    """Validate a matrix document and expand it; every problem is reported at once, naming the key.
    `trust_remote_code` is the command line's word, the only one that can allow a model's own code to run."""
    try:
        m = MatrixFile(**doc)
    except ValidationError as err:
        raise XeonftError(explain(err, source, known=MatrixFile.model_fields)) from None
    errors: list[str] = []
    _check_safety(m, source, errors)
    _check_names(f"{source}: fixed", list(m.fixed), errors)
    _check_names(f"{source}: axes", list(m.axes), errors)
    for axis, axis_values in m.axes.items():
        if not axis_values:
            errors.append(f"{source}: axes: '{axis}' has no values")
    combinations = math.prod(len(v) for v in m.axes.values())
    if combinations > MAX_CELLS:  # before expanding: YAML aliases can make a small file a huge product
        sizes = ", ".join(f"{a}: {len(v):,} values" for a, v in m.axes.items() if len(v) > 1)
        errors.append(f"{source}: axes: {combinations:,} combinations ({sizes}); a matrix expands to at most "
                      f"{MAX_CELLS:,} cells")
    for i, rule in enumerate(m.exclude):
        for key in rule:
            if key not in m.axes:
                errors.append(f"{source}: exclude[{i}]: '{key}' is not an axis")
    if m.design == "duet":
        _check_duet(m, source, errors)
    if errors:
        raise XeonftError("\n".join(errors))

    recipe = m.recipe
    if recipe and base_dir is not None and (base_dir / recipe).is_file():
        recipe = str(base_dir / recipe)
    try:
        recipe_values, _ = base_values(recipe, kind="recipe")
    except XeonftError as err:
        raise XeonftError(f"{source}: recipe: {err}") from None
    presets: dict[str, dict[str, Any]] = {"none": {}}
    for name in m.axes.get(PRESET_KEY, []) + ([m.fixed[PRESET_KEY]] if PRESET_KEY in m.fixed else []):
        if str(name) not in presets:
            try:
                overlay = overlay_values(str(name), base_dir)
            except XeonftError as err:
                errors.append(f"{source}: preset: {err}")
                continue
            # the sweep sets steps, logging, evaluation and prompts, as it does over the matrix's recipe
            presets[str(name)] = {k: v for k, v in overlay.items() if k not in (*MANAGED_KEYS, *SWEEP_DEFAULTS)}
            _check_names(f"{source}: preset {name}", list(presets[str(name)]), errors)
    if errors:
        raise XeonftError("\n".join(errors))
    names = list(m.axes)
    cells: list[CellSpec] = []
    seen: set[str] = set()
    for combo in itertools.product(*(m.axes[a] for a in names)):
        values = dict(zip(names, combo, strict=True))
        if _excluded(values, m.exclude):
            continue
        preset = str(values.get(PRESET_KEY, m.fixed.get(PRESET_KEY, "none")))
        # the preset over the recipe and `fixed`, the cell's other axes over the preset
        merged = {**m.fixed, **presets[preset], **values}
        where = f"{source}: cell {', '.join(f'{k}={describe(v, bare=True)}' for k, v in values.items()) or '(single)'}"
        launch_values = {k: v for k, v in merged.items() if k in LAUNCH_KEYS}
        config_values = {k: v for k, v in merged.items() if k in CONFIG_KEYS}
        total = m.measure.warmup_steps + m.measure.steps + int(m.measure.profile)
        config_values.setdefault("eval_steps", total)  # one eval, after the measured steps
        config_values.setdefault("prompts", [])
        config_values.update(max_steps=total, save_checkpoints=False, logging_steps=1,
                             trust_remote_code=trust_remote_code)
        if m.design == "duet":  # each cell is pinned to the half of the cores its duet gives it
            launch_values.update(duet=True, pinning="cores")
        try:
            launch = LaunchSettings(**launch_values)
        except ValidationError as err:
            errors.append(explain(err, where, known=LAUNCH_KEYS))
            continue
        if launch.nnodes > 1 and not launch.rdzv_endpoint:
            errors.append(f"{where}: nnodes {launch.nnodes} needs rdzv_endpoint (host:port of node 0)")
            continue
        try:
            cfg = build_config({**recipe_values, **config_values}, source=where)
        except XeonftError as err:
            errors.append(str(err))
            continue
        spec = CellSpec(config=cfg, launch=launch, timing_warmup_steps=m.measure.warmup_steps,
                        measured_steps=m.measure.steps, profile=m.measure.profile, evaluate=m.measure.evaluate,
                        preset=preset,
                        variables=tuple(sorted(m.variables.items())), timeout_s=m.timeout_s)
        if (key := store_key(spec, "")) not in seen:
            seen.add(key)
            cells.append(spec)
    if errors:
        raise XeonftError("\n".join(dict.fromkeys(errors)))
    if not cells:
        raise XeonftError(f"{source}: every cell is excluded; nothing to run")
    auto = m.repeats if isinstance(m.repeats, AutoRepeats) else None
    rounds = auto.min if auto else int(m.repeats)  # type: ignore[arg-type]
    if m.design == "duet":
        if len(cells) < 2:
            raise XeonftError(f"{source}: design: duet needs two configurations or more (the first is the "
                              "reference the others run beside); this matrix has one")
        # the reference runs once beside each other configuration in every round
        ordered = [c.model_copy(update={"repeat": r * (len(cells) - 1) + j}) for r in range(rounds)
                   for j, c in enumerate([cells[0]] * (len(cells) - 1))]
        ordered += [c.model_copy(update={"repeat": r}) for r in range(rounds) for c in cells[1:]]
    else:
        ordered = [c.model_copy(update={"repeat": r}) for r in range(rounds) for c in cells]
    return Matrix(name=m.name, cells=ordered, axes=m.axes, document=doc, disturbance_cores=m.disturbance_cores,
                  peak=m.peak, calibration=m.calibration and m.design == "solo", auto=auto, order=m.order,
                  design=m.design, emulated_bf16=m.emulated_bf16)


def load_matrix(path: str | Path, trust_remote_code: bool = False) -> Matrix:
    p = Path(path)
    return parse_matrix(read_yaml(p), source=str(p), base_dir=p.parent, trust_remote_code=trust_remote_code)
