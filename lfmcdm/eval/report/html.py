"""The report's HTML: one static page, inline CSS, images referenced relatively (the folder is self-contained).

Every metric cell carries ``data-key`` and ``data-value`` (the exact JSON value) so a test - or a
person - can check the page against ``metrics/eval.json``: both are written from the same dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape

from lfmcdm.eval.metric_catalog import BY_KEY, by_group

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d232b;
       background: #f4f6f8; }
header { background: #17324d; color: #fff; padding: 22px 36px; }
header h1 { margin: 0 0 6px 0; font-size: 26px; }
header p { margin: 2px 0; color: #c9d6e3; font-size: 14px; }
nav { background: #fff; border-bottom: 1px solid #dde3e9; padding: 8px 36px; font-size: 14px; }
nav a { margin-right: 16px; color: #17324d; text-decoration: none; }
main { padding: 8px 36px 40px 36px; max-width: 1280px; }
section { background: #fff; border: 1px solid #dde3e9; border-radius: 8px; padding: 16px 22px; margin: 18px 0; }
h2 { margin-top: 0; font-size: 20px; color: #17324d; }
h3 { font-size: 15px; margin: 14px 0 6px 0; color: #33495f; }
p.note { color: #56687a; font-size: 13px; margin: 4px 0 10px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 200px; border: 1px solid #dde3e9; border-radius: 8px; padding: 10px 14px; background: #fafbfc; }
.card .label { font-size: 12px; color: #56687a; }
.card .value { font-size: 24px; font-weight: 600; color: #17324d; }
.card .sub { font-size: 12px; color: #56687a; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-bottom: 8px; }
table.metrics { table-layout: fixed; }
table.metrics col.c-label { width: 21%; } table.metrics col.c-key { width: 27%; }
table.metrics col.c-value { width: 9%; } table.metrics col.c-better { width: 6%; } table.metrics col.c-help { width: 37%; }
table.metrics code { word-break: break-all; }
th, td { border-bottom: 1px solid #e6eaee; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.help { color: #56687a; font-size: 12px; }
td.null { color: #9aa7b3; }
.grid2 { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.grid2 figure { flex: 1 1 420px; margin: 0; }
figure img { max-width: 100%; border: 1px solid #e6eaee; border-radius: 4px; background: #fff; }
figcaption { font-size: 12px; color: #56687a; margin-top: 4px; }
.gifs { display: flex; flex-wrap: wrap; gap: 16px; }
.gifs figure { margin: 0; }
.missing { color: #8a5a00; background: #fff6e0; border: 1px solid #f0d9a8; border-radius: 6px; padding: 8px 12px;
           font-size: 13px; }
footer { color: #7b8a99; font-size: 12px; padding: 0 36px 30px 36px; }
code { background: #f0f3f6; padding: 1px 4px; border-radius: 3px; }
"""

SECTIONS = (("summary", "Summary"), ("metrics", "Metrics"), ("frames", "Real vs synthetic"),
            ("animations", "Animated samples"), ("motion", "Motion fidelity"), ("privacy", "Privacy"),
            ("downstream", "Downstream EF"), ("training", "Training curves"))


def fmt(value) -> str:
    """Display form of a metric value (the exact value stays in data-value)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:d}"
    return f"{value:.4g}"


def data_value(value) -> str:
    """The exact JSON encoding of a value (what metrics/eval.json holds)."""
    return escape(json.dumps(value), quote=True)


def metric_cell(key: str, value) -> str:
    cls = "num null" if value is None else "num"
    return f'<td class="{cls}" data-key="{escape(key)}" data-value="{data_value(value)}">{escape(fmt(value))}</td>'


@dataclass
class Figure:
    src: str  # path relative to index.html
    caption: str


@dataclass
class ReportPage:
    """Everything the page shows; paths are relative to the report folder."""

    title: str
    subtitle: list[str]
    metrics: dict
    cards: list[tuple[str, str, str]]  # (label, key of the main value, sub text)
    frames: list[Figure] = field(default_factory=list)
    gifs: list[Figure] = field(default_factory=list)
    motion: list[Figure] = field(default_factory=list)
    sample_table: tuple[list[str], list[list[str]]] | None = None
    privacy: list[Figure] = field(default_factory=list)
    downstream: list[Figure] = field(default_factory=list)
    training: list[Figure] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # section id -> why it is empty
    notes: dict[str, str] = field(default_factory=dict)  # section id -> explanation shown under its title
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text) in the footer


def _figures(figs: list[Figure], css: str = "grid2") -> str:
    items = "".join(f'<figure><img src="{escape(f.src, quote=True)}" alt="{escape(f.caption, quote=True)}">'
                    f"<figcaption>{escape(f.caption)}</figcaption></figure>" for f in figs)
    return f'<div class="{css}">{items}</div>' if figs else ""


def _cards(page: ReportPage) -> str:
    out = []
    for label, key, sub in page.cards:
        value = page.metrics.get(key)
        out.append(f'<div class="card"><div class="label">{escape(label)}</div>'
                   f'<div class="value" data-key="{escape(key)}" data-value="{data_value(value)}">{escape(fmt(value))}</div>'
                   f'<div class="sub">{escape(sub)}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>'


def _metric_tables(metrics: dict) -> str:
    parts = []
    for group, items in by_group(metrics):
        rows = "".join(f"<tr><td>{escape(info.label)}</td><td><code>{escape(info.key)}</code></td>"
                       f"{metric_cell(info.key, value)}<td>{escape(_direction(info.key))}</td>"
                       f'<td class="help">{escape(info.help)}</td></tr>' for info, value in items)
        cols = "".join(f'<col class="c-{c}">' for c in ("label", "key", "value", "better", "help"))
        parts.append(f'<h3>{escape(group)}</h3><table class="metrics"><colgroup>{cols}</colgroup>'
                     f"<thead><tr><th>metric</th><th>key</th><th>value</th>"
                     f"<th>better</th><th>meaning</th></tr></thead><tbody>{rows}</tbody></table>")
    return "".join(parts)


def _direction(key: str) -> str:
    return {"lower": "lower", "higher": "higher", "none": ""}[BY_KEY[key].better]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(page: ReportPage, sid: str, title: str, body: str) -> str:
    note = f'<p class="note">{escape(page.notes[sid])}</p>' if sid in page.notes else ""
    missing = f'<p class="missing">{escape(page.missing[sid])}</p>' if sid in page.missing else ""
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{note}{missing}{body}</section>'


def render(page: ReportPage) -> str:
    """The whole page as a string."""
    titles = dict(SECTIONS)
    bodies = {
        "summary": _cards(page),
        "metrics": _metric_tables(page.metrics),
        "frames": _figures(page.frames),
        "animations": _figures(page.gifs, "gifs"),
        "motion": _figures(page.motion) + (_table(*page.sample_table) if page.sample_table else ""),
        "privacy": _figures(page.privacy),
        "downstream": _figures(page.downstream),
        "training": _figures(page.training),
    }
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title in SECTIONS)
    sections = "".join(_section(page, sid, titles[sid], bodies[sid]) for sid, _ in SECTIONS)
    links = " · ".join(f'<a href="{escape(h, quote=True)}">{escape(t)}</a>' for h, t in page.links)
    subtitle = "".join(f"<p>{escape(s)}</p>" for s in page.subtitle)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(page.title)}</h1>{subtitle}</header><nav>{nav}</nav>"
            f"<main>{sections}</main><footer>{links}</footer></body></html>\n")
