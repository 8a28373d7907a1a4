"""HTML of the atlas pages: plain strings, every value escaped, no template engine.

``root`` is the relative path from a page to the atlas folder ("" for index.html,
"../" for site/*.html, "../../" for site/units/* and site/classes/*).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

THUMB_CSS_PX = 128  # displayed thumbnail size (atlas.css .frame)


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def num(value: object, digits: int = 3) -> str:
    """A number for display ('' for missing); p-values in scientific notation when tiny."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)
    if v != 0 and abs(v) < 10**-digits:
        return f"{v:.1e}"
    return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def unit_file(group: str, unit: int) -> str:
    return f"{group.replace('/', '_')}-{int(unit)}.html"


def unit_label(group: str, unit: int) -> str:
    return f"latent {unit}" if group == "sae" else f"{group} unit {unit}"


def page(title: str, body: str, root: str) -> str:
    """A whole page: header (navigation, theme toggle), the body in <main>, the script."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{root}site/atlas.css"></head><body>\n'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header><span class="title">neurodissect atlas</span><nav aria-label="Atlas">'
        f'<a href="{root}index.html">Units &amp; latents</a>'
        f'<a href="{root}site/classes.html">Classes</a>'
        f'<a href="{root}site/metrics.html">Metrics &amp; provenance</a></nav>'
        '<button id="theme" type="button" aria-label="Switch light / dark theme">Theme</button>'
        f'</header>\n<main id="main">\n{body}\n</main>\n'
        f'<script src="{root}site/atlas.js"></script></body></html>\n'
    )


# -- index -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "num" or "text"


def index_columns(index: pd.DataFrame) -> list[Column]:
    """The index's columns; optional ones (q-value, truth, hit, verified) only with data."""
    cols = [
        Column("group", "Group", "text"),
        Column("unit", "Unit", "num"),
        Column("name", "Name", "text"),
        Column("score", "Score", "num"),
        Column("p_value", "p", "num"),
    ]
    if index["q_value"].notna().any():
        cols.append(Column("q_value", "q (FDR)", "num"))
    cols += [
        Column("stability", "Stability", "num"),
        Column("uninterpretable", "Flag", "text"),
        Column("n_exemplars", "Exemplars", "num"),
    ]
    if (index["truth"] != "").any():
        cols += [Column("truth", "Truth", "text"), Column("hit", "Name fits truth", "num")]
    if index["verified"].notna().any():
        cols.append(Column("verified", "Verified", "num"))
    return cols


def _cell(col: Column, row: dict, root: str) -> str:
    v = row[col.key]
    if col.key == "name":
        label = esc(v) if v else '<span class="muted">(unnamed)</span>'
        note = f' <span class="muted">({esc(row["note"])})</span>' if row["note"] else ""
        href = f"{root}site/units/{unit_file(row['group'], row['unit'])}"
        return f'<td data-v="{esc(v)}"><a href="{href}">{label}</a>{note}</td>'
    if col.key == "uninterpretable":
        return '<td class="flag">flagged</td>' if v else "<td></td>"
    if col.key in ("hit", "verified"):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return '<td data-v=""></td>'
        return f'<td data-v="{int(v)}">{"yes" if v else "no"}</td>'
    if col.kind == "num":
        raw = "" if pd.isna(v) else f"{float(v):.6g}"  # the sort key
        shown = str(int(v)) if col.key in ("unit", "n_exemplars") else num(v)
        return f'<td class="n" data-v="{raw}">{shown}</td>'
    return f"<td>{esc(v)}</td>"


def index_page(index: pd.DataFrame, significance: float, title: str) -> str:
    cols = index_columns(index)
    pval = index["q_value"].where(index["q_value"].notna(), index["p_value"])
    sig = (pval <= significance).to_numpy()
    head = "".join(
        f'<th scope="col" data-type="{c.kind}"><button type="button">{esc(c.label)}</button></th>'
        for c in cols
    )
    rows = []
    for row, s in zip(index.to_dict("records"), sig, strict=True):
        cells = "".join(_cell(c, row, "") for c in cols)
        rows.append(
            f'<tr data-group="{esc(row["group"])}" data-sig="{int(bool(s))}" '
            f'data-name="{esc(str(row["name"]).lower())}">{cells}</tr>'
        )
    groups = "".join(
        f'<option value="{esc(g)}">{esc(g)}</option>' for g in dict.fromkeys(index["group"])
    )
    which = "q-value (FDR)" if index["q_value"].notna().any() else "p-value"
    body = (
        f"<h1>{esc(title)}: units and latents</h1>"
        '<div class="controls" role="search">'
        '<label>Name <input type="search" id="q" placeholder="filter by name ( / )"></label>'
        f'<label>Group <select id="group"><option value="">all</option>{groups}</select></label>'
        f'<label><input type="checkbox" id="sig"> significant only ({which} &le; '
        f"{esc(significance)})</label>"
        f'<span id="count" aria-live="polite">{len(index)} units</span></div>'
        '<table id="units"><caption class="muted">Click a column title to sort; a name '
        "opens its page. Flagged: the name failed the confidence test.</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )
    return page(f"{title} — atlas", body, "")


# -- unit pages ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Exemplar:
    rank: int
    image_id: str
    activation: float
    thumb: str  # file name under site/thumbs
    size: tuple[int, int]  # original (width, height)
    heat: str | None  # quantised map, see heatmaps.quantise
    boxes: Sequence[tuple[str, float, float, float, float]] = ()  # finding, x, y, w, h


def exemplar_figure(label: str, ex: Exemplar, n: int, root: str) -> str:
    alt = (
        f"{label}, exemplar {ex.rank + 1} of {n}, activation {num(ex.activation)} "
        f"(image {ex.image_id})"
    )
    parts = [
        f'<img src="{root}site/thumbs/{esc(ex.thumb)}" alt="{esc(alt)}" '
        f'width="{THUMB_CSS_PX}" height="{THUMB_CSS_PX}" loading="lazy">'
    ]
    if ex.heat:
        parts.append(
            f'<canvas class="heat" width="{THUMB_CSS_PX}" height="{THUMB_CSS_PX}" '
            f'data-heat="{ex.heat}" aria-hidden="true"></canvas>'
        )
    if ex.boxes:
        w, h = ex.size
        rects = "".join(
            f'<rect x="{x:g}" y="{y:g}" width="{bw:g}" height="{bh:g}"><title>{esc(f)}</title></rect>'
            for f, x, y, bw, bh in ex.boxes
        )
        parts.append(
            f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
            f'aria-label="boxes: {esc(", ".join(b[0] for b in ex.boxes))}">{rects}</svg>'
        )
    cap = f"#{ex.rank + 1} · {num(ex.activation)}"
    return (
        f'<li><figure><div class="frame">{"".join(parts)}</div>'
        f"<figcaption>{esc(cap)}<br>{esc(ex.image_id)}</figcaption></figure></li>"
    )


def concepts_table(concepts: Sequence[dict]) -> str:
    """The unit's concepts (dicts with concept, score and optionally p_value, stability)."""
    if not concepts:
        return '<p class="muted">No concepts assigned.</p>'
    rows = []
    for r in concepts:
        rows.append(
            f"<tr><td>{esc(r['concept'])}</td><td class='n'>{num(r.get('score'))}</td>"
            f"<td class='n'>{num(r.get('p_value'))}</td>"
            f"<td class='n'>{num(r.get('stability'))}</td></tr>"
        )
    return (
        '<table><thead><tr><th scope="col">Concept</th><th scope="col">Score</th>'
        '<th scope="col">p</th><th scope="col">Stability</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def snippets_html(snippets: Iterable[tuple[str, str]], phrase: str) -> str:
    """(image_id, report) pairs as quotes with the name's phrase marked."""
    out = []
    low = phrase.lower()
    for image_id, text in snippets:
        pos = text.lower().find(low) if low else -1
        if pos >= 0:
            marked = (
                esc(text[:pos])
                + "<mark>"
                + esc(text[pos : pos + len(phrase)])
                + "</mark>"
                + esc(text[pos + len(phrase) :])
            )
        else:
            marked = esc(text)
        out.append(
            f'<blockquote><p>{marked}</p><footer class="muted">report of '
            f"{esc(image_id)}</footer></blockquote>"
        )
    return "".join(out) or '<p class="muted">No exemplar report contains the name.</p>'


@dataclass(frozen=True)
class UnitView:
    group: str
    unit: int
    row: dict  # the unit's index row
    concepts: Sequence[dict]  # concept, score, p_value, stability: the top ones
    exemplars: list[Exemplar]
    description: str = ""
    snippets: Sequence[tuple[str, str]] = ()
    prev_file: str | None = None
    next_file: str | None = None


def unit_page(v: UnitView) -> str:
    label = unit_label(v.group, v.unit)
    row = v.row
    name = row["name"] or "(unnamed)"
    stats = [
        ("Name", name),
        ("Score", num(row["score"])),
        ("p-value", num(row["p_value"])),
        ("q-value (FDR)", num(row["q_value"])),
        ("Stability", num(row["stability"])),
        ("Flag", "uninterpretable" if row["uninterpretable"] else "—"),
        ("Exemplars", str(row["n_exemplars"])),
        ("Truth", row["truth"]),
        ("Name fits truth", _yes_no(row["hit"])),
        ("Verified", _yes_no(row["verified"])),
        ("Naming method", row["method"]),
        ("Note", row["note"]),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(val)}</dd>" for k, val in stats if val)
    pager = '<nav class="pager" aria-label="Units">'
    if v.prev_file:
        pager += f'<a rel="prev" href="{esc(v.prev_file)}">&larr; previous</a>'
    pager += '<a href="../../index.html">index</a>'
    if v.next_file:
        pager += f'<a rel="next" href="{esc(v.next_file)}">next &rarr;</a>'
    pager += "</nav>"
    body = [f"<h1>{esc(label)} — {esc(name)}</h1>", pager, f'<dl class="stats">{dl}</dl>']
    if v.description:
        body.append(f"<p>{esc(v.description)}</p>")
    body.append("<h2>Top concepts</h2>" + concepts_table(v.concepts))
    if v.snippets:
        body.append("<h2>Report snippets behind the name</h2>" + snippets_html(v.snippets, name))
    n = int(row["n_exemplars"])
    body.append(f"<h2>Exemplars <span class='muted'>({len(v.exemplars)} of {n})</span></h2>")
    if any(e.heat for e in v.exemplars):
        body.append(
            '<p><label><input type="checkbox" id="heat-toggle" checked> heat map of '
            "the unit over each image (its spatial map, upsampled)</label></p>"
        )
    if v.exemplars:
        figs = "".join(exemplar_figure(label, e, n, "../../") for e in v.exemplars)
        body.append(f'<ul class="grid" aria-label="exemplars of {esc(label)}">{figs}</ul>')
    else:
        body.append('<p class="muted">No exemplars (the unit is dead on the probing images).</p>')
    return page(f"{label} — {name}", "\n".join(body), "../../")


def _yes_no(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "yes" if v else "no"


# -- classes ------------------------------------------------------------------------------------
def bar(value: float, top: float, label: str) -> str:
    width = 0 if top <= 0 else round(120 * abs(value) / top)
    cls = "bar neg" if value < 0 else "bar"
    return (
        f'<span class="{cls}" style="width:{width}px" role="img" aria-label="{esc(label)}"></span>'
    )


@dataclass(frozen=True)
class ExplainedImage:
    image_id: str
    thumb: str
    true: str
    predicted: str
    rows: Sequence[tuple[str, int, float]]  # concept, latent, contribution


def class_page(
    name: str, weights: pd.DataFrame, images: Sequence[ExplainedImage], concept_href
) -> str:
    """``weights``: concept, latent, weight for this class, strongest first."""
    top = float(weights["weight"].abs().max()) if len(weights) else 0.0
    rows = "".join(
        f'<tr><td><a href="{concept_href(int(r.latent))}">{esc(r.concept)}</a></td>'
        f"<td class='n'>{num(r.weight)}</td><td>{bar(r.weight, top, f'weight {num(r.weight)}')}</td></tr>"
        for r in weights.itertuples()
    )
    body = [
        f"<h1>Class {esc(name)}</h1>",
        "<h2>Concept weights of the concept bottleneck model</h2>",
        '<table><thead><tr><th scope="col">Concept</th><th scope="col">Weight</th>'
        f'<th scope="col"><span class="muted">|weight|</span></th></tr></thead><tbody>{rows}'
        "</tbody></table>",
        "<h2>Test images and their explanations</h2>",
    ]
    cards = []
    for im in images:
        ctop = max((abs(c) for _, _, c in im.rows), default=0.0)
        lines = "".join(
            f'<tr><td><a href="{concept_href(lat)}">{esc(c)}</a></td>'
            f"<td>{bar(v, ctop, f'contribution {num(v)}')}</td><td class='n'>{num(v)}</td></tr>"
            for c, lat, v in im.rows
        )
        alt = f"test image {im.image_id}, true class {im.true}, predicted {im.predicted}"
        verdict = "ok" if im.true == im.predicted else "flag"
        cards.append(
            f'<div class="card"><div class="row"><div class="frame"><img src="../thumbs/'
            f'{esc(im.thumb)}" alt="{esc(alt)}" width="{THUMB_CSS_PX}" height="{THUMB_CSS_PX}" '
            f'loading="lazy"></div><div><p>{esc(im.image_id)}<br>true: <b>{esc(im.true)}</b>'
            f'<br>predicted: <b class="{verdict}">{esc(im.predicted)}</b></p></div></div>'
            f"<table><caption class='muted'>contributions to {esc(im.predicted)}</caption>"
            f"<tbody>{lines}</tbody></table></div>"
        )
    body.append(
        f'<div class="cards">{"".join(cards)}</div>'
        if cards
        else '<p class="muted">No explained test image of this class.</p>'
    )
    return page(f"class {name}", "\n".join(body), "../../")


def classes_page(classes: Sequence[str], files: Sequence[str], counts: Sequence[int]) -> str:
    items = "".join(
        f'<li><a href="classes/{esc(f)}">{esc(c)}</a> '
        f'<span class="muted">({n} test images)</span></li>'
        for c, f, n in zip(classes, files, counts, strict=True)
    )
    return page("classes", f"<h1>Classes</h1><ul>{items}</ul>", "../")


# -- metrics ------------------------------------------------------------------------------------
def metrics_page(
    metrics: dict[str, tuple[dict, str, str | None]], provenance: Sequence[tuple[str, str | None]]
) -> str:
    """``metrics``: label → (values, href of the file, href of its sidecar or None);
    ``provenance``: (artifact label, href of its sidecar or None) of every input."""
    body = ["<h1>Metrics and provenance</h1>"]
    for label, (values, href, side) in metrics.items():
        links = f'<a href="{esc(href)}">{esc(label)}</a>'
        if side:
            links += f' · <a href="{esc(side)}">provenance</a>'
        rows = "".join(
            f"<tr><th scope='row'>{esc(k)}</th><td class='n'>{esc(_metric(v))}</td></tr>"
            for k, v in sorted(values.items())
        )
        body.append(f"<h2>{links}</h2><table><tbody>{rows}</tbody></table>")
    items = "".join(
        f"<li>{esc(a)}"
        + (
            f' — <a href="{esc(s)}">provenance</a>'
            if s
            else ' <span class="muted">(no sidecar)</span>'
        )
        + "</li>"
        for a, s in provenance
    )
    body.append(f"<h2>Every artifact the atlas read</h2><ul>{items}</ul>")
    return page("metrics", "\n".join(body), "../")


def _metric(v: object) -> str:
    if isinstance(v, (bool, int, np.integer)) or not isinstance(v, (float, np.floating)):
        return str(v)
    if float(v).is_integer():
        return str(int(v))
    return num(v, 4)
