"""Reports from a real (tiny) result set: files, plots, numbers that match the CSV, escaping."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.history.trend import Point, Series
from harness.render.history import render_history
from harness.render.pages import Page as HtmlPage
from harness.render.report import render
from tests.conftest import disk_records

PLOTS = {"throughput", "speedup", "memory", "loss", "step_times"}


class Page(HTMLParser):
    """Collects images, table cells and text, and fails on unbalanced tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.images: list[dict[str, str]] = []
        self.cells: list[str] = []
        self.stack: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in ("meta", "br"):
            self.stack.append(tag)
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data.strip())


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    _, store = sweep
    out = tmp_path_factory.mktemp("report")
    return store, render(store.root, out=out, baseline="precision=fp32,batch_size=1,pinning=none").folder


def test_every_file_and_plot_is_written(report):
    _, out = report
    for name in ("index.html", "report.md", "cells.csv", "report.json"):
        assert (out / name).is_file()
    for plot in PLOTS:
        assert (out / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"


def test_the_html_parses_and_embeds_every_plot(report):
    _, out = report
    page = Page()
    page.feed((out / "index.html").read_text())
    page.close()
    assert page.stack == []
    assert len(page.images) == len(PLOTS)
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)


def test_the_numbers_shown_match_cells_csv(report):
    store, out = report
    df = pd.read_csv(out / "cells.csv")
    assert len(df) == len(disk_records(store))
    ok = df[df["status"] == "ok"]
    top = json.loads((out / "report.json").read_text())["top"]
    assert len(top) == ok.groupby(["variant", "batch_size"]).ngroups
    page = Page()
    page.feed((out / "index.html").read_text())
    md = (out / "report.md").read_text()
    for row in top:
        cell = ok[(ok["variant"] == row["variant"]) & (ok["batch_size"] == row["batch_size"])]
        assert row["tok/s (median)"] == pytest.approx(cell["tokens_per_s"].median())
        shown = f"{row['tok/s (median)']:.1f}"
        assert shown in page.cells and shown in md
    base = ok[(ok["precision"] == "fp32") & (ok["batch_size"] == 1) & (ok["pinning"] == "none")]
    assert any(r["x baseline"] == pytest.approx(1.0) for r in top)
    assert base["tokens_per_s"].notna().all()


def test_failed_cells_are_listed_with_their_reason(report):
    _, out = report
    md = (out / "report.md").read_text()
    assert "failed" in md and "SIGSEGV" in md


def test_text_from_results_is_escaped(sweep, tmp_path):
    _, store = sweep
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    failed = next(p for p in (copy / "cells").glob("*.json") if json.loads(p.read_text())["status"] == "failed")
    record = json.loads(failed.read_text())
    record["reason"] = "<script>alert('x')</script>"
    failed.write_text(json.dumps(record))
    out = render(copy, out=tmp_path / "r").folder
    text = (out / "index.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_the_report_verb_prints_what_render_returned_not_a_reread_file(sweep, tmp_path, capsys, monkeypatch):
    """render returns its first lines as a value (the baseline, headline, notes, overhead), the ones report.json
    holds; the verb prints those, and reads nothing back from disk."""
    import harness.render.report as report_module

    _, store = sweep
    returned = []
    real = report_module.render
    monkeypatch.setattr(report_module, "render", lambda *a, **k: returned.append(real(*a, **k)) or returned[-1])
    capsys.readouterr()
    assert main(["report", str(store.root), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out.splitlines()
    (got,) = returned
    saved = json.loads((got.folder / "report.json").read_text())
    assert (got.baseline, got.headline, list(got.notes)) == (saved["baseline"], saved["headline"], saved["notes"])
    assert got.notes and printed == got.summary_lines()
    assert printed[0] == saved["baseline"] and f"note: {saved['notes'][0]}" in printed
    assert printed[-3:] == [f"report: {tmp_path / 'r' / 'index.html'}", f"        {tmp_path / 'r' / 'report.md'}",
                            f"        {tmp_path / 'r' / 'cells.csv'}"]


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "strong", "ul", "li", "table",
             "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption"}
HOSTILE = "<script>alert('x')</script>"


def _parsed(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.stack == [] and page.tags <= PAGE_TAGS, page.tags - PAGE_TAGS
    return page


def test_the_page_builder_escapes_every_part_it_is_given(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG\r\n")
    text = (HtmlPage(f"title {HOSTILE}").heading(f"h1 {HOSTILE}", level=1).paragraph(f"lead {HOSTILE}")
            .paragraph(f"note {HOSTILE}", kind="note", strong=True).bullets([f"item {HOSTILE}", "a & b"])
            .table(pd.DataFrame({f"col {HOSTILE}": [f"cell {HOSTILE}"]})).figure(png, caption=f"cap '{HOSTILE}\"")
            .html())
    page = _parsed(text)
    assert "<script>" not in text and text.count("&lt;script&gt;") == 9 and "a &amp; b" in text
    assert page.images[0]["alt"] == f"cap '{HOSTILE}\"" and page.images[0]["src"].startswith("data:image/png;base64")
    assert f"cell {HOSTILE}" in page.cells


def test_the_history_page_escapes_what_the_catalog_holds(tmp_path):
    point = {"n": 2, "median": 10.0, "low": 9.0, "high": 11.0, "eval_loss": 1.5, "runs": [9.5, 10.5],
             "work": {"tokens_per_step": 512}, "stacks": [f"stack {HOSTILE}"], "faults": []}
    series = Series(identity="i", machine="m", cpu=f"cpu {HOSTILE}", label=f"label {HOSTILE}", by="torch",
                    points=[Point(**point, x="2.8"), Point(**point, x=f"2.9 {HOSTILE}")])
    out = render_history([series], tmp_path / "h", by=f"torch {HOSTILE}")
    text = (out / "index.html").read_text()
    page = _parsed(text)
    assert "<script>" not in text and len(page.images) == 1 and f"stack {HOSTILE}" in page.cells
    assert f"label {HOSTILE} on cpu {HOSTILE}" in (out / "report.md").read_text()


def test_cli_report_and_a_bad_baseline(sweep, tmp_path, capsys):
    _, store = sweep
    assert main(["report", str(store.root), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()
    assert main(["report", str(store.root), "--out", str(tmp_path / "r2"), "--baseline", "colour=red"]) == 2
    assert "unknown column(s): colour" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2


BUNDLE = Path("/work/shared/bundles/epyc-2026-12-01-default")


def test_no_selector_is_no_selection_and_the_default_baseline_is_the_callers_choice():
    """`parse_selector(None)` once returned the default baseline; now no text is no selector, and `baseline`
    chooses the default itself."""
    from harness.analysis.summary import DEFAULT_BASELINE, baseline, parse_selector

    assert parse_selector(None) == {} and parse_selector("") == {}
    assert parse_selector("precision=bf16,batch_size=4") == {"precision": "bf16", "batch_size": 4}
    if not BUNDLE.is_dir():
        pytest.skip("the result set of another machine is not here")
    from harness.analysis.frames import cells_frame
    from harness.results.store import ResultStore

    df = cells_frame(ResultStore(BUNDLE))  # a set written by main at 75d2e10, with the default baseline's cell
    found, note = baseline(df, None)
    assert found is not None and note == "baseline: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_BASELINE.items())
    assert df[df["identity"] == found]["batch_size"].unique().tolist() == [4]

@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (installed by .ci/run)")
def test_every_image_decodes_in_a_real_headless_browser(report):
    from playwright.sync_api import sync_playwright

    _, out = report
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page()
        page.goto(Path(out / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        page.screenshot(path=str(out / "screenshot.png"), full_page=True)
        browser.close()
    assert len(sizes) == len(PLOTS)
    assert all(done and w > 100 and h > 100 for done, w, h in sizes)
    assert (out / "screenshot.png").read_bytes()[:4] == b"\x89PNG"
