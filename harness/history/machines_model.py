"""What `xeonft machines` found, as written to `machines.json`: the machines, each configuration's speed and cost on
each, and the verdicts between them. One frozen model per part, published in docs/schema/ beside the records."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.measure.kind import MachineFacts

KINDS_RULE = ("A machine's kind is its CPU (brand, family, model), the ISA flags that change kernels (AMX, "
              "AVX-512 BF16/FP16/VNNI, AVX2), its physical cores, sockets, NUMA nodes and memory in whole GiB; the "
              "hostname is not part of it. Runs of machines of one kind pool into one machine unless a name given "
              "with --name tells them apart; machines of different kinds never pool, whatever they are named.")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineEntry(_Part):
    """One machine of the page: a kind, or the part of one a user named."""

    name: str = Field(description="Its name: one given with --name, else one made from its kind.")
    kind: str = Field(description="The kind's id (harness.measure.kind): equal for machines whose runs pool.")
    facts: MachineFacts = Field(description="The facts of its kind (the hostname of its first run).")
    label: str = Field(description="The kind for people.")
    hosts: list[str] = Field(description="The hostnames its runs came from.")
    sources: list[str] = Field(description="The result sets its runs came from.")
    runs: int = Field(description="Its measured runs (ok, no fault injected).")
    gemm_peak_tflops: dict[str, float] = Field(description="Its own measured GEMM peak by dtype at the cells' "
                                               "threads (median over its runs), TFLOP/s.")
    price_per_hour: float | None = Field(description="The price given for it, per hour (None: none given).")


class MachineResult(_Part):
    """One configuration on one machine, from its runs (one value per run, a process)."""

    machine: str = Field(description="The machine's name.")
    runs: int = Field(description="Measured runs.")
    tokens_per_second: float = Field(description="Median of the runs' throughput (tokens trained on per second of "
                                                 "measured steps; warm-up, evaluation and start-up excluded).")
    low: float | None = Field(description="95% interval of the typical run's throughput, low end (None: one run).")
    high: float | None = Field(description="Its high end.")
    mfu: float | None = Field(description="Median model FLOPs utilisation against this machine's own GEMM peak.")
    gemm_tflops: float | None = Field(description="The GEMM peak (of the cell's dtype, at its threads) it is "
                                                  "measured against, TFLOP/s.")
    cost_per_million_tokens: float | None = Field(description="Price per hour / (tokens per second x 3600) x 1e6, "
                                                  "at the median (None: no price).")
    cost_low: float | None = Field(description="Its 95% interval's low end (from the throughput interval).")
    cost_high: float | None = Field(description="Its high end.")
    versions: dict[str, str] = Field(description="The library versions its runs resolved (several joined by '/').")


class Contrast(_Part):
    """A machine against the best one of a configuration, by speed or by cost."""

    machine: str = Field(description="The machine compared.")
    against: str = Field(description="The best machine (fastest, or cheapest).")
    measure: str = Field(description="speed (tokens/s) or cost (tokens per unit of price).")
    verdict: str = Field(description="slower | faster | unchanged | inconclusive, of `machine` against `against`.")
    ratio: float = Field(description="machine / against, of the geometric means of the runs (tokens/s, or tokens "
                                     "per unit of price).")
    low: float | None = Field(description="The ratio's 95% interval, low end (None: fewer than 2 runs a side).")
    high: float | None = Field(description="Its high end.")
    test: str = Field(description="The test that gave the verdict.")
    reason: str = Field(description="The verdict's evidence, one sentence.")

    @property
    def told_apart(self) -> bool:
        """Whether the data say this machine is worse than the best (slower, or dearer per token)."""
        return self.verdict == "slower"


class ConfigurationComparison(_Part):
    """One configuration across the machines that ran it."""

    identity: str = Field(description="The configuration's identity across library stacks (lineage key).")
    label: str = Field(description="The configuration for people.")
    results: list[MachineResult] = Field(description="Each machine's figures, fastest first.")
    fastest: str | None = Field(description="The machine with the highest median throughput.")
    speed: list[Contrast] = Field(description="Every other machine against the fastest.")
    cheapest: str | None = Field(description="The machine with the lowest median cost per token (None: prices "
                                             "missing for some machine).")
    cost: list[Contrast] = Field(description="Every other machine against the cheapest.")
    software: str | None = Field(description="Where the machines' library versions differ, which (the comparison "
                                             "then mixes hardware and software).")


class JobProjection(_Part):
    """A sizing's projected job on the machine it ran on, and its cost there."""

    machine: str = Field(description="The machine's name.")
    source: str = Field(description="The sizing's folder.")
    configuration: str = Field(description="What it recommends (batch, layout).")
    hours: float = Field(description="The job's projected wall time, hours.")
    low: float | None = Field(description="Its 95% prediction interval, low end, hours.")
    high: float | None = Field(description="Its high end.")
    cost: float | None = Field(description="hours x the machine's price (None: no price).")
    cost_low: float | None = Field(description="Its low end.")
    cost_high: float | None = Field(description="Its high end.")


class MachinesFindings(_Part):
    """machines.json: the machines, the configurations compared across them, the verdict."""

    machines: list[MachineEntry] = Field(description="The machines, fastest first on the headline configuration.")
    configurations: list[ConfigurationComparison] = Field(description="Every configuration run on two or more "
                                                          "machines, then those run on one.")
    headline: str | None = Field(description="The identity of the configuration the verdict is about.")
    common: str = Field(description="What every configuration shares (model, sequence length, ...), which their "
                                    "labels leave out.")
    verdict: list[str] = Field(description="The page's verdict, sentence by sentence.")
    jobs: list[JobProjection] = Field(description="Sizings' projected jobs and their cost, where sizings were given.")
    kinds_rule: str = Field(description="How a machine's kind is decided.")
    currency: str = Field(description="The unit prices are given in.")
    threshold: float = Field(description="The smallest relative difference that counts.")
    alpha: float = Field(description="The significance level of the verdicts' test.")
    sources: list[str] = Field(description="Where the runs came from (catalogs, result sets, bundles).")
