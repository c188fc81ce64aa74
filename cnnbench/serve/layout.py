"""The dashboard's page frame and small HTML helpers, shared by its pages."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.responses import HTMLResponse

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;
padding:.2em .5em;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00}.ok{color:#070}.muted{color:#666}img{max-width:100%;border:1px solid #eee}
progress{width:8em}"""


def page(title: str, body: str, *, refresh: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    nav = ('<nav><a href="/">jobs</a><a href="/submit">submit</a><a href="/history">history</a>'
           '<a href="/tradeoff">accuracy vs operations</a><a href="/docs">API</a></nav>')  # fmt: skip
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)} - cnnbench</title>'
            f"<style>{CSS}</style></head><body>{nav}<h1>{html.escape(title)}</h1>{body}"
            "</body></html>")  # fmt: skip
    return HTMLResponse(text)


def fmt(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v))


def table(rows: Iterable[Sequence[str]], head: Sequence[str], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def td(v: Any) -> str:
    return f'<td class="n">{fmt(v)}</td>' if isinstance(v, (int, float)) else f"<td>{fmt(v)}</td>"
