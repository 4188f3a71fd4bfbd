"""The report's pages: Markdown (terminal, pull request) and one self-contained HTML file. Everything shown that
came from a result set is escaped."""

from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

from harness.base.units import GIB, num
from harness.render.figures import Figures

OVERHEAD_NOTE = ("Each fully instrumented configuration (tree sampler, oneDNN probe, progress) against its bare twin "
                 "in the same sweep: overhead = step time full / bare - 1 (from run throughputs, the same tokens per "
                 "step), with a 95% interval over runs and a Welch p; tracker share = the step tracker's own time per "
                 "step, paid by both; launcher CPU share = the CPU time the launcher (sampler and progress) used "
                 "while the cell ran, over the cell's wall time x its cores: what it can take from training.")
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


def page(meta: dict[str, Any], tables: dict[str, pd.DataFrame], fp: dict[str, Any], figs: Figures) -> str:
    e = html.escape
    imgs = "".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{e(caption)}</figcaption></figure>'
        for path, caption in figs.values())
    machine = pd.DataFrame(fingerprint_rows(fp), columns=["", "value"])
    notes = "".join(f"<p class='note'>{e(_sentence(n))}</p>" for n in meta.get("notes", []))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xeonft report: {e(meta['name'])}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>xeonft report: {e(meta['name'])}</h1>"
            f"<p class='lead'>{meta['ok']} of {meta['cells']} cells ok; {e(meta['baseline'])}. {e(LEAD)}</p>"
            + notes
            + (f"<p class='lead'><strong>{e(_sentence(meta['headline']))}</strong></p>" if meta.get("headline") else "")
            + f"<h2>Configurations, fastest first</h2>{html_table(tables['top'])}"
            f"<h2>Cells without numbers, disturbed or flagged</h2>{html_table(tables['problems'])}"
            + (f"<h2>Instrumentation overhead</h2><p>{e(OVERHEAD_NOTE)}</p>{html_table(tables['overhead'])}"
               if not tables["overhead"].empty else "")
            + f"<h2>Figures</h2>{imgs}<h2>Machine</h2>{html_table(machine)}</body></html>")
