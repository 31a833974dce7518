"""Overlap between rules' cohorts: a pairwise matrix (people in both, Jaccard) and the
UpSet intersections of all of them (Lex et al., "UpSet: visualization of intersecting
sets", IEEE TVCG 2014), drawn as inline SVG.

An UpSet intersection is *exclusive*: the people selected by exactly that combination of
rules and by no other, so the intersections add up to the people any rule selects. The
sources warn that risk-selected and multimorbidity-selected cohorts overlap only in part;
the matrix shows how much, the UpSet bars show where.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

MAX_BARS = 20  # intersections drawn; the Parquet holds them all


@dataclass(frozen=True)
class Overlap:
    rules: tuple[str, ...]
    sizes: tuple[int, ...]
    both: np.ndarray         # (k, k) people in rule i and rule j (the diagonal: rule i's size)
    jaccard: np.ndarray      # (k, k) both / in either (NaN where both cohorts are empty)
    intersections: list[tuple[tuple[str, ...], int]]  # exclusive, largest first

    def pairs(self) -> list[dict]:
        k = len(self.rules)
        return [{"rule_a": self.rules[i], "rule_b": self.rules[j], "size_a": self.sizes[i],
                 "size_b": self.sizes[j], "both": int(self.both[i, j]),
                 "jaccard": None if np.isnan(self.jaccard[i, j]) else float(self.jaccard[i, j])}
                for i in range(k) for j in range(k)]


def overlap(masks: dict[str, np.ndarray]) -> Overlap:
    """Pairwise counts, Jaccard and exclusive intersections of cohorts (bool per patient)."""
    names = tuple(masks)
    m = np.stack([masks[n] for n in names]).astype(np.int64) if names else np.zeros((0, 0), np.int64)
    both = m @ m.T if names else np.zeros((0, 0), np.int64)
    sizes = np.diag(both)
    either = sizes[:, None] + sizes[None, :] - both
    with np.errstate(divide="ignore", invalid="ignore"):
        jac = np.where(either > 0, both / np.maximum(either, 1), np.nan)
    return Overlap(names, tuple(int(s) for s in sizes), both, jac, _intersections(names, m))


def _intersections(names: tuple[str, ...], m: np.ndarray) -> list[tuple[tuple[str, ...], int]]:
    if not names:
        return []
    code = (m.T << np.arange(len(names), dtype=np.int64)).sum(1)
    counts = np.bincount(code, minlength=1 << len(names)) if len(names) <= 16 else None
    if counts is None:  # pragma: no cover - more than 16 rules: count the combinations present
        values, n = np.unique(code, return_counts=True)
        pairs = dict(zip(values.tolist(), n.tolist()))
    else:
        pairs = {c: int(n) for c, n in enumerate(counts) if n}
    pairs.pop(0, None)  # selected by no rule
    combos = [(tuple(names[i] for i in range(len(names)) if c >> i & 1), n) for c, n in pairs.items()]
    return sorted(combos, key=lambda cn: (-cn[1], len(cn[0]), cn[0]))


def upset_svg(o: Overlap, max_bars: int = MAX_BARS) -> str:
    """An UpSet chart: intersection sizes as columns above a dot matrix of the rules they
    combine, each rule's cohort size as a bar on the left. No scripts, no external references."""
    bars = o.intersections[:max_bars]
    k = len(o.rules)
    if not bars or not k:
        return '<p class="empty">No one is selected by any rule.</p>'
    label_w, setbar_w, col_w, row_h, top_h = 150, 110, 28, 22, 170
    x0 = label_w + setbar_w + 10
    width, height = x0 + col_w * len(bars) + 10, top_h + row_h * k + 16
    peak = max(n for _, n in bars)
    biggest = max(o.sizes) or 1
    parts = [f'<svg class="upset" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>UpSet chart: people selected by each combination of {k} rules</title>"]
    for j, (combo, n) in enumerate(bars):
        h = (top_h - 30) * n / peak
        x = x0 + j * col_w
        parts.append(f'<rect x="{x + 5}" y="{top_h - 6 - h:.1f}" width="{col_w - 10}" height="{h:.1f}" '
                     f'fill="#1c5fa8"><title>{escape(" & ".join(combo))} only: {n:,}</title></rect>')
        parts.append(f'<text x="{x + col_w / 2}" y="{top_h - 10 - h:.1f}" font-size="10" '
                     f'text-anchor="middle">{n:,}</text>')
        rows = [i for i, name in enumerate(o.rules) if name in combo]
        ys = [top_h + row_h * i + row_h / 2 for i in rows]
        if len(ys) > 1:
            parts.append(f'<line x1="{x + col_w / 2}" x2="{x + col_w / 2}" y1="{ys[0]}" y2="{ys[-1]}" '
                         'stroke="#222" stroke-width="2"/>')
        for i in range(k):
            y = top_h + row_h * i + row_h / 2
            fill = "#222" if i in rows else "#d0d4d8"
            parts.append(f'<circle cx="{x + col_w / 2}" cy="{y}" r="6" fill="{fill}"/>')
    for i, (name, size) in enumerate(zip(o.rules, o.sizes)):
        y = top_h + row_h * i
        w = (setbar_w - 40) * size / biggest
        parts.append(f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4}" font-size="12" '
                     f'text-anchor="end">{escape(name)}</text>')
        parts.append(f'<rect x="{label_w + setbar_w - w:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                     f'fill="#5f6b73"><title>{escape(name)}: {size:,}</title></rect>')
    parts.append(f'<text x="{label_w + setbar_w}" y="{top_h + row_h * k + 12}" font-size="10" '
                 'text-anchor="end">cohort size</text>')
    parts.append("</svg>")
    return "".join(parts)
