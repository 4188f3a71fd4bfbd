"""The pages every renderer writes: Markdown (terminal, pull request) and one self-contained HTML file, and the
report's own. `Page` is the one HTML page builder (title, style, body parts, images embedded): the report, the
sizing report and the history page are built with it, and it is the one place that escapes what a page shows, so
nothing that came from a result set can become markup."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.own_eval import NOTE as OWN_EVAL_NOTE
from harness.base.units import GIB, num
from harness.render.figures import Figures

OVERHEAD_NOTE = ("Each fully instrumented configuration (tree sampler, oneDNN probe, progress) against its bare twin "
                 "in the same sweep: overhead = step time full / bare - 1 (from run throughputs, the same tokens per "
                 "step), with a 95% interval over runs and a Welch p; tracker share = the step tracker's own time per "
                 "step, paid by both; launcher CPU share = the CPU time the launcher (sampler and progress) used "
                 "while the cell ran, over the cell's wall time x its cores: what it can take from training.")
PHASES_NOTE = ("Each configuration's cells' wall time (launch to exit, as the launcher measured it), by phase: the "
               "shares of a row add up to 100%, 'other' being what no phase claims (building the result, teardown, "
               "exit). A configuration's first run evaluates and logs oneDNN's kernels; its other runs do not (unless "
               "the matrix says `evaluate: every`), and every cell reads tokenized, packed data from the cache when "
               "an earlier cell prepared the same.")
CALIBRATION_NOTE = ("Beside every cell, right before and right after it, the launcher's own interpreter ran the same "
                    "short GEMM workload (bf16 and fp32, 2048^3) at the cell's threads on its CPUs. CV raw is the "
                    "spread of tokens/s between a configuration's calibrated runs; CV normalized, of tokens/s over "
                    "the calibration's GFLOP/s in the dtype of the cell's GEMMs (rescaled to tokens/s); change over "
                    "a cell, the calibration after it against before it. Verdicts above are on raw throughput.")
LEAD = ("Throughput is non-padding tokens trained on per second of measured steps (timing warm-up, compile, the "
        "profiled step and eval excluded). Each run (repeat, a separate process) gives one value; a configuration "
        "shows the median of its runs, a 95% interval across runs and their coefficient of variation (CV).")


def fingerprint_rows(fp: dict[str, Any]) -> list[tuple[str, str]]:
    cpu, topo = fp.get("cpu", {}), fp.get("topology", {})
    flags = ", ".join(f for f, on in cpu.get("flags", {}).items() if on) or "-"
    libs = ", ".join(f"{k} {v}" for k, v in fp.get("libraries", {}).items() if v)
    build = fp.get("torch_build", {})
    return [
        ("CPU", f"{cpu.get('brand')} ({cpu.get('vendor')})"),
        ("AMX", "yes" if cpu.get("amx") else "no"),
        ("ISA flags", flags),
        ("topology", f"{topo.get('sockets')} socket(s), {topo.get('physical_cores')} cores, "
                     f"{topo.get('threads_per_core')} thread(s)/core, {topo.get('numa_nodes')} NUMA node(s)"),
        ("memory", f"{(fp.get('memory_bytes') or 0) / GIB:.1f} GiB"),
        ("OS", f"{fp.get('os', {}).get('platform')}"),
        ("Python", str(fp.get("python"))),
        ("libraries", libs),
        ("torch build", f"oneDNN {build.get('onednn')}, CPU capability {build.get('cpu_capability')}"),
        ("tools", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in fp.get("tools", {}).items())),
    ]


def _cell(v: Any) -> str:
    return num(v).replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in cols) + " |" for _, row in frame.iterrows()]
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    return frame.map(num).to_html(index=False, escape=True, border=0, classes="t")


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def markdown(meta: dict[str, Any], tables: dict[str, pd.DataFrame], fp: dict[str, Any], figs: Figures) -> str:
    parts = [f"# xeonft report: {meta['name']}", "", f"{meta['ok']} of {meta['cells']} cells ok; {meta['baseline']}. "
             + LEAD, ""]
    parts += [f"> {_sentence(note)}" for note in meta.get("notes", [])] + ([""] if meta.get("notes") else [])
    if meta.get("headline"):
        parts += [f"**{_sentence(meta['headline'])}**", ""]
    parts += ["## Configurations, fastest first", "", md_table(tables["top"]),
              "## Cells without numbers (failed, out of memory, timed out, unavailable), disturbed or flagged", "",
              md_table(tables["problems"])]
    if not tables["overhead"].empty:
        parts += ["## Instrumentation overhead", "", OVERHEAD_NOTE, "", md_table(tables["overhead"])]
    if not tables.get("phases", pd.DataFrame()).empty:
        parts += ["## Where the cells' time went", "", PHASES_NOTE, "", md_table(tables["phases"])]
    if not tables.get("own_eval", pd.DataFrame()).empty:
        parts += ["## Does it train better? xeonft's own eval loss", "", OWN_EVAL_NOTE, "",
                  md_table(tables["own_eval"])]
    if meta.get("calibration"):
        parts += ["## Calibration beside every cell", "", CALIBRATION_NOTE, "", f"**{_sentence(meta['calibration'])}**",
                  "", md_table(tables["calibration"])]
    parts += ["## Machine", "", md_table(pd.DataFrame(fingerprint_rows(fp), columns=["", "value"])),
              "## Figures", ""]
    for path, caption in figs.values():
        parts += [f"![{caption}]({path.name})", "", f"_{caption}_", ""]
    return "\n".join(parts)


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table.t{border-collapse:collapse;font-size:14px;margin:1em 0}"
         "table.t td,table.t th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
         "table.t th{background:#f3f6f9}figure{margin:1.5em 0}img{max-width:100%}"
         "figcaption{color:#555;font-size:13px}.lead{font-size:15px;color:#333}"
         ".note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px}")


class Page:
    """One self-contained HTML page in xeonft's style, built part by part in reading order. Every text a part is
    given is escaped here (tables by pandas, here too), so a caller never writes markup or escapes anything."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._body: list[str] = []

    def heading(self, text: str, level: int = 2) -> Page:
        self._body.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str, kind: str = "lead", strong: bool = False) -> Page:
        """A paragraph of class `kind` (lead, note, or '' for none), its text in bold when `strong`."""
        inner = f"<strong>{html.escape(text)}</strong>" if strong else html.escape(text)
        self._body.append(f"<p class=\"{html.escape(kind)}\">{inner}</p>" if kind else f"<p>{inner}</p>")
        return self

    def bullets(self, items: Iterable[str]) -> Page:
        self._body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>")
        return self

    def table(self, frame: pd.DataFrame) -> Page:
        self._body.append(html_table(frame))
        return self

    def figure(self, png: Path, caption: str | None = None, alt: str | None = None) -> Page:
        """A PNG embedded in the page (base64), with its caption under it where there is one."""
        data = base64.b64encode(png.read_bytes()).decode()
        below = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._body.append(f"<figure><img alt=\"{html.escape(alt or caption or png.stem)}\" "
                          f"src=\"data:image/png;base64,{data}\">{below}</figure>")
        return self

    def figures(self, figs: Figures) -> Page:
        for png, caption in figs.values():
            self.figure(png, caption)
        return self

    def html(self) -> str:
        return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body>{''.join(self._body)}</body></html>")


def page(meta: dict[str, Any], tables: dict[str, pd.DataFrame], fp: dict[str, Any], figs: Figures) -> str:
    """The report's HTML page."""
    title = f"xeonft report: {meta['name']}"
    doc = Page(title).heading(title, level=1)
    doc.paragraph(f"{meta['ok']} of {meta['cells']} cells ok; {meta['baseline']}. {LEAD}")
    for note in meta.get("notes", []):
        doc.paragraph(_sentence(note), kind="note")
    if meta.get("headline"):
        doc.paragraph(_sentence(meta["headline"]), strong=True)
    doc.heading("Configurations, fastest first").table(tables["top"])
    doc.heading("Cells without numbers, disturbed or flagged").table(tables["problems"])
    if not tables["overhead"].empty:
        doc.heading("Instrumentation overhead").paragraph(OVERHEAD_NOTE, kind="").table(tables["overhead"])
    if not tables.get("phases", pd.DataFrame()).empty:
        doc.heading("Where the cells' time went").paragraph(PHASES_NOTE, kind="").table(tables["phases"])
    if not tables.get("own_eval", pd.DataFrame()).empty:
        doc.heading("Does it train better? xeonft's own eval loss").paragraph(OWN_EVAL_NOTE, kind="").table(
            tables["own_eval"])
    if meta.get("calibration"):
        doc.heading("Calibration beside every cell").paragraph(CALIBRATION_NOTE, kind="")
        doc.paragraph(_sentence(meta["calibration"]), strong=True).table(tables["calibration"])
    doc.heading("Figures").figures(figs)
    doc.heading("Machine").table(pd.DataFrame(fingerprint_rows(fp), columns=["", "value"]))
    return doc.html()
