"""The published form of the records on disk, generated from their models: one JSON Schema per record
(`docs/schema/<name>.json`) and a field reference (`docs/records.md`) from the fields' descriptions.

The generator is `scripts/schema.py`, which holds the registry of published models (this layer's `RECORDS` and the
higher layers' own, such as sizing's findings) and runs `main`; `--check` exits 1 when docs/ is not what the
models say (CI runs it), without it the files are written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.results.bundle_model import BundleHeader
from harness.results.records import SCHEMA_VERSION, CellRecord, Manifest

# this layer's records, by the name of their published schema
RECORDS: dict[str, type[BaseModel]] = {"cell-record": CellRecord, "manifest": Manifest, "bundle-header": BundleHeader}
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """What a reader accepts (validation mode: the spec's fields as they are stored, aliases included)."""
    return {"$schema": DRAFT, **model.model_json_schema(mode="validation")}


def documents(models: Mapping[str, type[BaseModel]]) -> dict[str, str]:
    """Every generated file, by its path under docs/, and its text."""
    out = {f"schema/{name}.json": json.dumps(json_schema(model), indent=1) + "\n" for name, model in models.items()}
    out["records.md"] = reference(models)
    return out


def reference(models: Mapping[str, type[BaseModel]]) -> str:
    """docs/records.md: each published record and every model it holds, one table of fields each."""
    lines = ["# Record fields", "",
             "Generated from the models by `python scripts/schema.py` (do not edit: CI checks it is current). The",
             f"records' layout is `schema_version` {SCHEMA_VERSION}; older layouts are migrated as they are read",
             "(`harness.results.records`). The JSON Schemas are beside this page, in `schema/`.", ""]
    done: set[str] = set()
    for name, model in models.items():
        schema = model.model_json_schema(mode="validation")
        defs = schema.get("$defs", {})
        lines += [f"## {name} ({schema.get('title', model.__name__)})", ""]
        lines += _table(schema)
        queue = _refs(schema)
        while queue:
            ref = queue.pop(0)
            if ref in done or ref not in defs:
                continue
            done.add(ref)
            lines += [f"### {ref}", "", *_table(defs[ref])]
            queue += [r for r in _refs(defs[ref]) if r not in done]
    return "\n".join(lines).rstrip() + "\n"


def _table(schema: dict[str, Any]) -> list[str]:
    doc = " ".join((schema.get("description") or "").split())
    rows = [doc, ""] if doc else []
    rows += ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(schema.get("required", []))
    for field, prop in schema.get("properties", {}).items():
        default = "required" if field in required else _cell(json.dumps(prop["default"])) if "default" in prop \
            else "empty"
        rows.append(f"| `{field}` | {_cell(_type(prop))} | {default} | {_cell(prop.get('description', ''))} |")
    return [*rows, ""]


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " or ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        if "prefixItems" in prop:
            return f"[{', '.join(_type(p) for p in prop['prefixItems'])}]"
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"object of {_type(prop['additionalProperties'])}"
    return str(kind)


def _refs(schema: Any) -> list[str]:
    """The definitions a schema refers to, in the order they appear."""
    if isinstance(schema, dict):
        own = [schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else []
        return own + [r for k, v in schema.items() if k != "$defs" for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def stale(docs: Path, models: Mapping[str, type[BaseModel]]) -> list[str]:
    """The files under `docs` that differ from what the models generate, are missing, or are no longer made."""
    expected = documents(models)
    out = [p for p, text in expected.items() if not (docs / p).is_file() or (docs / p).read_text() != text]
    made = {f"schema/{p.name}" for p in (docs / "schema").glob("*.json")}
    return out + sorted(made - set(expected))


def main(argv: list[str], models: Mapping[str, type[BaseModel]]) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/schema/ and docs/records.md from the "
                                                 "record models.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the files are not current; write nothing")
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[2] / "docs")
    args = parser.parse_args(argv)
    if args.check:
        behind = stale(args.docs, models)
        for path in behind:
            print(f"schema: {args.docs / path} is not what the models generate; run python scripts/schema.py")
        return 1 if behind else 0
    for path, text in documents(models).items():
        (args.docs / path).parent.mkdir(parents=True, exist_ok=True)
        (args.docs / path).write_text(text, encoding="utf-8")
    for path in stale(args.docs, models):  # a schema no model makes any more
        (args.docs / path).unlink()
    return 0
