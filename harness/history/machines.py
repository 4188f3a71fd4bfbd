"""The same configurations on every machine: which is fastest and which cheapest for a job, with intervals, and
which ones the data cannot tell apart (`xeonft machines`).

Runs come from catalogs, result sets or bundles, as catalog rows. A run counts when it measured (status ok, no
fault injected). Machines are decided by kind (`harness.measure.kind`): machines of one kind pool, unless a user's
`--name` tells some apart; machines of different kinds never pool. Every verdict is Welch's t-test on the logs of
one value per run (`harness.base.stats.decide`): on tokens per second for speed, on tokens per unit of price for
cost (so a dearer machine that is faster enough can still be the cheaper one).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.analysis.summary import DEFAULT_BASELINE
from harness.base.errors import XeonftError
from harness.base.stats import decide, summarize_runs
from harness.config.identity import NO_FAULT
from harness.config.precision import precision_rule
from harness.history.catalog import CatalogRun
from harness.history.machines_model import (
    KINDS_RULE,
    ConfigurationComparison,
    Contrast,
    JobProjection,
    MachineEntry,
    MachineResult,
    MachinesFindings,
)
from harness.history.trend import labels
from harness.measure.kind import MachineFacts

VERSIONED = ("torch", "transformers", "trl", "peft")
BRIEF = ("model", "precision", "batch_size")  # a lone configuration's label
COMMON = ("model", "seq_len", "precision", "batch_size", "attn_implementation", "backend")
TEST = "Welch's t-test on the logs of one value per run"


@dataclass(frozen=True)
class SourcedRun:
    """A catalog row and where the user pointed for it (a catalog, a result set, a bundle): `--name` may select
    by either."""

    source: str
    run: CatalogRun


@dataclass(frozen=True)
class SizedJob:
    """A sizing's projected job, as `xeonft size` found it on one machine."""

    source: str
    cpu: str | None
    cores: int | None
    kind: str | None  # absent in sizings written before kinds
    hostname: str | None
    configuration: str
    seconds: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class _Placed:
    run: CatalogRun
    source: str
    facts: MachineFacts
    machine: str


def facts_of(run: CatalogRun) -> MachineFacts:
    """A run's machine facts; a row catalogued before they were kept has its CPU only."""
    facts = getattr(run, "facts", None)
    return MachineFacts.model_validate(facts) if facts else MachineFacts(cpu=run.cpu)


def measured(sourced: Iterable[SourcedRun]) -> list[SourcedRun]:
    """Runs with a throughput and no injected fault, each once (a set seen through two sources counts once)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for s in sourced:
        r = s.run
        ident = (str(getattr(r, "set_id", None) or r.result_set), r.key)
        if ident in seen or r.status != "ok" or not r.tokens_per_second or (r.fault or NO_FAULT) != NO_FAULT:
            continue
        seen.add(ident)
        out.append(s)
    return out


def _selects(selector: str, s: SourcedRun, facts: MachineFacts) -> bool:
    r = s.run
    return selector in {s.source, r.result_set, str(getattr(r, "set_id", None) or ""), facts.hostname or "",
                        facts.kind} or (len(selector) >= 4 and facts.kind.startswith(selector))


def _short(facts: MachineFacts) -> str:
    parts = [facts.cpu or "unknown CPU"]
    if facts.cores is not None:
        parts.append(f"{facts.cores}c")
    if facts.memory_gib is not None:
        parts.append(f"{facts.memory_gib}GiB")
    return " ".join(parts)


def place(runs: list[SourcedRun], names: dict[str, str]) -> list[_Placed]:
    """Each run's machine: a name given for its source, set, host or kind; else its kind's own name (the host's,
    when the kind's runs all come from one host)."""
    placed: list[tuple[SourcedRun, MachineFacts, str | None]] = []
    named_kinds: dict[str, MachineFacts] = {}
    defaults: dict[str, MachineFacts] = {}
    used: set[str] = set()
    for s in runs:
        facts = facts_of(s.run)
        given = next((name for sel, name in names.items() if _selects(sel, s, facts)), None)
        if given is not None:
            used.update(sel for sel in names if _selects(sel, s, facts))
            other = named_kinds.setdefault(given, facts)
            if other.kind != facts.kind:
                raise XeonftError(f"--name gives '{given}' to machines of different kinds ({other.label}; "
                                  f"{facts.label}): different kinds never pool")
        else:
            defaults.setdefault(facts.kind, facts)
        placed.append((s, facts, given))
    unused = [sel for sel in names if sel not in used]
    if unused:
        raise XeonftError(f"--name {unused[0]}=...: no run's source, result set, host or kind is '{unused[0]}'")
    hosts: dict[str, set[str]] = {}
    for _, facts, given in placed:
        if given is None:
            hosts.setdefault(facts.kind, set()).add(facts.hostname or "")
    # a kind seen on one host is called by the host's name; one seen on several by the kind's
    short = {kind: next(iter(hosts[kind])) if len(hosts[kind]) == 1 and "" not in hosts[kind] else _short(f)
             for kind, f in defaults.items()}
    clash = {n for n in short.values() if list(short.values()).count(n) > 1 or n in named_kinds}
    default_name = {kind: f"{n} [{kind[:6]}]" if n in clash else n for kind, n in short.items()}
    return [_Placed(run=s.run, source=s.source, facts=facts, machine=given or default_name[facts.kind])
            for s, facts, given in placed]


def common(definitions: dict[str, dict[str, Any]]) -> str:
    """What every configuration shares, of the fields a reader looks for first (their labels show the rest)."""
    values = list(definitions.values())
    same = [k for k in COMMON if values and all(k in v and str(v[k]) == str(values[0][k]) for v in values)]
    return ", ".join(f"{k}={values[0][k]}" for k in same)


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _versions(runs: list[CatalogRun]) -> dict[str, str]:
    out = {}
    for lib in VERSIONED:
        found = sorted({r.versions[lib] for r in runs if r.versions.get(lib)})
        if found:
            out[lib] = "/".join(found)
    return out


def _cost(price: float | None, tps: float | None) -> float | None:
    return price / (tps * 3600) * 1e6 if price and tps else None


def result(machine: str, runs: list[CatalogRun], price: float | None) -> MachineResult:
    tps = [float(r.tokens_per_second or 0) for r in runs]
    iv = summarize_runs(tps)
    return MachineResult(
        machine=machine, runs=iv.n, tokens_per_second=iv.median, low=iv.low, high=iv.high,
        mfu=_median(getattr(r, "mfu", None) for r in runs),
        gemm_tflops=_median(getattr(r, "gemm_tflops", None) for r in runs),
        cost_per_million_tokens=_cost(price, iv.median), cost_low=_cost(price, iv.high),
        cost_high=_cost(price, iv.low), versions=_versions(runs))


def contrast(machine: str, values: list[float], best: str, best_values: list[float], measure: str,
             threshold: float, alpha: float) -> Contrast:
    v = decide(best_values, values, threshold=threshold, alpha=alpha)
    return Contrast(machine=machine, against=best, measure=measure, verdict=v.verdict, ratio=v.ratio, low=v.low,
                    high=v.high, test=f"{TEST} ({'tokens/s' if measure == 'speed' else 'tokens per unit of price'}, "
                    f"alpha {alpha:g}, ±{threshold:.0%})",
                    reason=v.reason.replace("base run", f"{best} run").replace("new run", f"{machine} run"))


def _software(by_machine: dict[str, list[CatalogRun]]) -> str | None:
    versions = {m: _versions(runs) for m, runs in by_machine.items()}
    differ = [lib for lib in VERSIONED if len({v.get(lib) for v in versions.values()}) > 1]
    if not differ:
        return None
    return "; ".join(f"{lib} " + ", ".join(f"{v.get(lib) or '?'} on {m}" for m, v in versions.items())
                     for lib in differ)


def compare_configuration(identity: str, label: str, by_machine: dict[str, list[CatalogRun]],
                          prices: dict[str, float], threshold: float, alpha: float) -> ConfigurationComparison:
    results = sorted((result(m, runs, prices.get(m)) for m, runs in by_machine.items()),
                     key=lambda r: -r.tokens_per_second)
    tps = {m: [float(r.tokens_per_second or 0) for r in runs] for m, runs in by_machine.items()}
    fastest = results[0].machine
    speed = [contrast(r.machine, tps[r.machine], fastest, tps[fastest], "speed", threshold, alpha)
             for r in results[1:]]
    cheapest, cost = None, []
    if all(m in prices for m in by_machine):
        per_price = {m: [v / prices[m] for v in values] for m, values in tps.items()}
        cheapest = max(per_price, key=lambda m: statistics.median(per_price[m]))
        cost = [contrast(m, per_price[m], cheapest, per_price[cheapest], "cost", threshold, alpha)
                for m in sorted(per_price, key=lambda m: -statistics.median(per_price[m])) if m != cheapest]
    return ConfigurationComparison(identity=identity, label=label, results=results, fastest=fastest, speed=speed,
                                   cheapest=cheapest, cost=cost, software=_software(by_machine))


def _headline(configs: dict[str, dict[str, list[CatalogRun]]], selector: dict[str, Any] | None) -> str | None:
    """The configuration the verdict is about: the one selected, else the recipe's cell, else the one on the most
    machines (most runs breaking ties)."""
    def config(ident: str) -> dict[str, Any]:
        return next(iter(configs[ident].values()))[0].config

    def matches(ident: str, sel: dict[str, Any]) -> bool:
        return all(str(config(ident).get(k)) == str(v) for k, v in sel.items())

    if selector:
        chosen = [i for i in configs if matches(i, selector)]
        if not chosen:
            raise XeonftError(f"--cell {selector}: no measured configuration matches")
    else:
        chosen = [i for i in configs if matches(i, DEFAULT_BASELINE)] or list(configs)
    return max(chosen, key=lambda i: (len(configs[i]), sum(len(r) for r in configs[i].values())), default=None)


def _price_for(name: str, members: list[_Placed], prices: dict[str, float]) -> float | None:
    keys = [name, *{p.facts.hostname for p in members if p.facts.hostname}, *{p.facts.kind for p in members}]
    return next((prices[k] for k in keys if k in prices), None)


def _gemm_peaks(members: list[_Placed]) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for p in members:
        peak = getattr(p.run, "gemm_tflops", None)
        if peak:
            out.setdefault(precision_rule(p.run.config.get("precision", "bf16-autocast")).gemm, []).append(peak)
    return {dtype: statistics.median(v) for dtype, v in sorted(out.items())}


def _jobs(sized: list[SizedJob], machines: list[MachineEntry]) -> list[JobProjection]:
    out = []
    for job in sized:
        entry = next((m for m in machines if job.kind and m.kind == job.kind), None) or next(
            (m for m in machines if m.facts.cpu == job.cpu and m.facts.cores == job.cores), None)
        name = entry.name if entry else f"{job.cpu or 'unknown CPU'} {job.cores}c (sized only)"
        price = entry.price_per_hour if entry else None

        def hours(seconds: float | None) -> float | None:
            return None if seconds is None else seconds / 3600

        def cost(seconds: float | None, price: float | None = price) -> float | None:
            return None if seconds is None or price is None else seconds / 3600 * price

        out.append(JobProjection(machine=name, source=job.source, configuration=job.configuration,
                                 hours=job.seconds / 3600, low=hours(job.low), high=hours(job.high),
                                 cost=cost(job.seconds), cost_low=cost(job.low), cost_high=cost(job.high)))
    return out


def compare_machines(sourced: list[SourcedRun], names: dict[str, str] | None = None,
                     prices: dict[str, float] | None = None, sized: list[SizedJob] | None = None,
                     selector: dict[str, Any] | None = None, threshold: float = 0.05, alpha: float = 0.01,
                     currency: str = "USD", sources: list[str] | None = None) -> MachinesFindings:
    """Every configuration's speed and cost on every machine, the verdict on the headline configuration."""
    placed = place(measured(sourced), names or {})
    if not placed:
        raise XeonftError("no measured run in the sources given (runs that are ok, with no fault injected)")
    members: dict[str, list[_Placed]] = {}
    for p in placed:
        members.setdefault(p.machine, []).append(p)
    given = prices or {}
    machine_price = {m: _price_for(m, ps, given) for m, ps in members.items()}
    known = {*members, *(p.facts.hostname for p in placed if p.facts.hostname), *(p.facts.kind for p in placed)}
    stray = [k for k in given if k not in known]
    if stray:
        raise XeonftError(f"--price {stray[0]}=...: no machine is named '{stray[0]}' (machines: "
                          f"{', '.join(sorted(members))})")
    price = {m: p for m, p in machine_price.items() if p is not None}
    configs: dict[str, dict[str, list[CatalogRun]]] = {}
    for p in placed:
        configs.setdefault(p.run.identity, {}).setdefault(p.machine, []).append(p.run)
    definitions = {ident: next(iter(by.values()))[0].config for ident, by in configs.items()}
    named = labels(definitions, shown=() if len(definitions) > 1 else BRIEF)
    compared = [compare_configuration(ident, named[ident], by, price, threshold, alpha)
                for ident, by in configs.items()]
    compared.sort(key=lambda c: (-len(c.results), c.label))
    headline = _headline(configs, selector)
    top = next((c for c in compared if c.identity == headline), None)
    order = [r.machine for r in top.results] if top else []
    rank = {m: (order.index(m) if m in order else len(order), m) for m in members}
    entries = [MachineEntry(
        name=m, kind=ps[0].facts.kind, facts=ps[0].facts, label=ps[0].facts.label,
        hosts=sorted({p.facts.hostname for p in ps if p.facts.hostname}),
        sources=sorted({p.source for p in ps}), runs=len(ps), gemm_peak_tflops=_gemm_peaks(ps),
        price_per_hour=machine_price[m]) for m, ps in sorted(members.items(), key=lambda kv: rank[kv[0]])]
    jobs = _jobs(sized or [], entries)
    return MachinesFindings(machines=entries, configurations=compared, headline=headline, common=common(definitions),
                            verdict=verdict(top, entries, jobs, currency), jobs=jobs, kinds_rule=KINDS_RULE,
                            currency=currency, threshold=threshold, alpha=alpha, sources=sources or [])


def _interval(low: float | None, high: float | None, fmt: str = "{:.1f}") -> str:
    return "no interval from one run" if low is None or high is None else \
        f"95% interval {fmt.format(low)}-{fmt.format(high)}"


def verdict(top: ConfigurationComparison | None, machines: list[MachineEntry], jobs: list[JobProjection],
            currency: str) -> list[str]:
    """The page's answer in sentences: the fastest and cheapest machine for the headline configuration, and
    which machines the data cannot tell apart from them."""
    if top is None:
        return ["No configuration was measured on the machines given."]
    out = []
    best = top.results[0]
    if len(top.results) == 1:
        out.append(f"Only one machine ran {top.label}: {best.machine}, {best.tokens_per_second:.1f} tok/s "
                   f"({_interval(best.low, best.high)}); there is nothing to compare it with. Add another "
                   "machine's bundle or result set.")
    else:
        out.append(f"Fastest for {top.label}: {best.machine}, {best.tokens_per_second:.1f} tok/s "
                   f"({_interval(best.low, best.high)}).")
        apart = [c for c in top.speed if c.told_apart]
        tied = [c for c in top.speed if not c.told_apart]
        for c in apart:
            out.append(f"{c.machine} is slower: {c.ratio:.2f}x its speed ({_interval(c.low, c.high, '{:.2f}')}; "
                       f"{c.test}).")
        for c in tied:
            how = "runs at the same speed within the threshold" if c.verdict == "unchanged" else \
                "cannot be told apart from it" if c.verdict == "inconclusive" else "is faster by the test"
            out.append(f"{c.machine} {how}: {c.ratio:.2f}x ({_interval(c.low, c.high, '{:.2f}')}; {c.reason}).")
    if top.cheapest:
        cheap = next(r for r in top.results if r.machine == top.cheapest)
        out.append(f"Cheapest per million tokens trained at the stated prices: {cheap.machine}, "
                   f"{cheap.cost_per_million_tokens:.4g} {currency} "
                   f"({_interval(cheap.cost_low, cheap.cost_high, '{:.4g}')}).")
        for c in top.cost:
            how = "costs more per token" if c.told_apart else \
                "costs the same per token within the threshold" if c.verdict == "unchanged" else \
                "cannot be told apart from it on cost"
            out.append(f"{c.machine} {how}: {c.ratio:.2f}x the tokens per {currency} "
                       f"({_interval(c.low, c.high, '{:.2f}')}).")
    elif len(top.results) > 1:
        missing = [m.name for m in machines if m.price_per_hour is None]
        out.append(f"No cost verdict: no price for {', '.join(missing)} (give --price NAME=X/h).")
    if top.software:
        out.append(f"The machines ran different library versions ({top.software}): the difference is not the "
                   "hardware's alone.")
    for job in jobs:
        cost = f", {job.cost:.4g} {currency}" if job.cost is not None else ""
        out.append(f"The job sized on {job.machine} ({job.configuration}) takes {job.hours:.1f} h "
                   f"({_interval(job.low, job.high)}){cost}.")
    return out
