"""``/docs``: the API as one server-rendered page, from the app's own OpenAPI schema.

FastAPI's default page loads Swagger UI's script and styles from a CDN, so it was blank
offline. This page needs nothing from the network (no script, no external asset): every route
with its parameters and their bounds, its body, its answers; the schema itself is at
``/openapi.json``.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0
1em}h2{margin-top:1.6em;font-size:1.05em;font-family:monospace}table{border-collapse:collapse;
margin:.4em 0}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
code,pre{background:#f6f6f6}pre{padding:.5em;overflow-x:auto;max-height:24em}.m{color:#666}"""


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("minLength", "length >="), ("maxLength", "length <="),
                      ("pattern", "matches"), ("enum", "one of")):  # fmt: skip
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    for sub in schema.get("anyOf", []):
        if sub.get("type") != "null":
            parts.append(_bounds(sub))
    return ", ".join(p for p in parts if p)


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    return str(schema.get("type", "any"))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    head = f"<h2>{method.upper()} {html.escape(path)}</h2>"
    doc = op.get("description") or op.get("summary") or ""
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            p["name"], p["in"], "yes" if p.get("required") else "no",
            _type(p.get("schema", {})), _bounds(p.get("schema", {})),
            p.get("schema", {}).get("default", ""), p.get("description", ""),
        )) + "</tr>"
        for p in op.get("parameters", [])
    ]  # fmt: skip
    params = (
        "<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th><th>bounds</th>"
        f"<th>default</th><th></th></tr>{''.join(rows)}</table>"
        if rows
        else ""
    )
    body = ""
    for ctype, spec in op.get("requestBody", {}).get("content", {}).items():
        text = json.dumps(spec.get("schema", {}), indent=1)
        body += f"<p>Body, <code>{html.escape(ctype)}</code>:</p><pre>{html.escape(text)}</pre>"
    answers = ", ".join(
        f"{code} {html.escape(str(r.get('description', '')))}"
        for code, r in op.get("responses", {}).items()
    )
    return f'{head}<p>{html.escape(doc)}</p>{params}{body}<p class="m">Answers: {answers}</p>'


def add_docs_page(app: FastAPI) -> None:
    """``/docs``: the API's page, offline."""

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        spec = app.openapi()
        ops = [
            _operation(path, method, op)
            for path, methods in spec.get("paths", {}).items()
            for method, op in methods.items()
        ]
        text = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" '
            f'href="data:,"><title>API - cnnbench</title><style>{_CSS}</style></head><body>'
            '<nav><a href="/">jobs</a> · <a href="/openapi.json">openapi.json</a></nav>'
            f"<h1>{html.escape(spec['info']['title'])} API {html.escape(spec['info']['version'])}"
            '</h1><p>JSON in and out; every error is <code>{"error": "one line"}</code> '
            "with a 4xx status. Writes need <code>Authorization: Bearer $CNNBENCH_TOKEN</code>. "
            'The caps: <a href="/api/limits">/api/limits</a>.</p>'
            f"{''.join(ops)}</body></html>"
        )
        return HTMLResponse(text)
