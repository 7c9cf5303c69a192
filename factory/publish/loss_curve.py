"""Training curves (the loss; a preference run's reward margin) as small SVGs for the model card (no plotting
library in the worker image)."""

from __future__ import annotations

import json
from pathlib import Path


LOSS = {"train": "loss", "eval": "eval_loss"}
MARGIN = {"train": "rewards/margins"}


def scores(tasks: list[str]) -> dict[str, str]:
    """Each held-out task's score at the evaluations during training (metrics.jsonl's eval_<task>)."""
    return {task: f"eval_{task}" for task in tasks}


def points(metrics: Path, keys: dict[str, str] = LOSS) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series from metrics.jsonl, one per split of `keys` (split -> metric) that was logged. Later
    rows win (resumed runs)."""
    series: dict[str, dict[float, float]] = {split: {} for split in keys}
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            for split, key in keys.items():
                if key in row:
                    series[split][row["step"]] = row[key]
    return {k: sorted(v.items()) for k, v in series.items() if v}


def svg(series: dict[str, list[tuple[float, float]]], width: int = 640, height: int = 320, label: str = "loss",
        y_range: tuple[float, float] | None = None) -> str:
    """The series as lines on one set of axes, the legend under the plot (a row per series, never over a line).
    y_range: the bounds to draw (scores: 0 to 1), else the data's."""
    pad, row = 48, 18
    total = height + row * len(series)
    xs = [x for s in series.values() for x, _ in s]
    ys = [y for s in series.values() for _, y in s]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    if y_range:  # widened where a value falls outside (a metric that is not a fraction)
        y0, y1 = min(y_range[0], min(ys)), max(y_range[1], max(ys))
    else:
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def at(x: float, y: float) -> str:
        return f"{pad + (x - x0) / (x1 - x0) * (width - 2 * pad):.1f},{height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad):.1f}"

    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    colours = {"train": palette[0], "eval": palette[1]}
    for i, name in enumerate(n for n in series if n not in colours):  # a held-out task's score, one colour each
        colours[name] = palette[2 + i % 4]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{total}" fill="white"/>',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
           f'<text x="{width / 2}" y="{height - 18}" text-anchor="middle">step ({x0:g} to {x1:g})</text>',
           f'<text x="12" y="{pad - 12}">{label} ({y0:.3g} to {y1:.3g})</text>']
    for i, (name, s) in enumerate(series.items()):
        out.append(f'<polyline fill="none" stroke="{colours[name]}" stroke-width="2" points="{" ".join(at(x, y) for x, y in s)}"/>')
        y = height + row * i
        out.append(f'<line x1="{pad}" y1="{y - 4}" x2="{pad + 24}" y2="{y - 4}" stroke="{colours[name]}" stroke-width="2"/>')
        out.append(f'<text x="{pad + 32}" y="{y}" fill="black">{name} {label}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"


def write(metrics: Path, dest: Path, keys: dict[str, str] = LOSS, label: str = "loss",
          y_range: tuple[float, float] | None = None) -> bool:
    """Write dest (an .svg); False when there is nothing to plot."""
    from factory.base import atomic

    series = points(metrics, keys)
    if not series:
        return False
    atomic.write_text(dest, svg(series, label=label, y_range=y_range))
    return True
