"""Figures of an ablation: accuracy vs TPF curves, AUP bars, and the step-by-step heatmap of one block.

Figures are built with `matplotlib.figure.Figure` and saved directly (Agg for PNG, the SVG backend for SVG),
never through `pyplot`: no global figure state, no GUI backend, safe in tests and on headless machines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["plot_accuracy_vs_tpf", "plot_aup_bars", "plot_trace_heatmap"]

_FORMATS = ("png", "svg")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")
_DPI = 150
# Longer token strings are cut so the heatmap stays readable at one cell per position.
_MAX_TOKEN_CHARS = 6


def _save(fig: Figure, out_dir: str | PathLike[str], stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach a canvas: savefig then picks the right backend per format
    paths = []
    for fmt in _FORMATS:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=_DPI, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_accuracy_vs_tpf(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    out_dir: str | PathLike[str],
    *,
    title: str = "Accuracy vs tokens per forward",
    stem: str = "accuracy_vs_tpf",
) -> list[Path]:
    """One line per curve label (e.g. "spd x oput"), points (TPF, accuracy %) sorted by TPF, as DMax Fig. 4.

    Writes `<out_dir>/<stem>.png` and `.svg`; returns their paths.
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_tpf() needs at least one curve")
    # Wide enough for a legend beside the axes: with a dozen curves a legend inside hides the data.
    fig = Figure(figsize=(9.6, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, points) in enumerate(curves.items()):
        if not points:
            continue
        pts = sorted((float(x), float(y)) for x, y in points)
        xs, ys = zip(*pts)
        ax.plot(
            xs, ys, label=label,
            marker=_MARKERS[i % len(_MARKERS)],
            # cycle line styles after the 10 default colours so 20 curves stay distinguishable
            linestyle=_LINESTYLES[(i // 10) % len(_LINESTYLES)],
        )
    ax.set_xlabel("tokens per forward (TPF)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, out_dir, stem)


def plot_aup_bars(
    aups: Mapping[str, float],
    out_dir: str | PathLike[str],
    *,
    title: str = "AUP per method",
    stem: str = "aup",
) -> list[Path]:
    """Horizontal bars of AUP per method, in the given order, each labelled with its value.

    Writes `<out_dir>/<stem>.png` and `.svg`; returns their paths.
    """
    if not aups:
        raise ValueError("plot_aup_bars() needs at least one method")
    labels = list(aups)
    values = [float(aups[k]) for k in labels]
    fig = Figure(figsize=(6.4, 0.8 + 0.4 * len(labels)))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    bars = ax.barh(y, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=3, fontsize="small")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # first method on top, as listed
    ax.set_xlabel("AUP")
    ax.set_title(title)
    ax.set_xlim(0, max(max(values), 1e-9) * 1.15)  # room for the value labels
    return _save(fig, out_dir, stem)


def _display_token(tok: Any) -> str:
    s = str(tok)
    s = s.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "\u00b7")  # make whitespace visible
    if not s:
        return "\u2205"
    return s if len(s) <= _MAX_TOKEN_CHARS else s[: _MAX_TOKEN_CHARS - 1] + "\u2026"


def _validate_trace(trace: Sequence[Mapping[str, Sequence]]) -> int:
    if not trace:
        raise ValueError("plot_trace_heatmap() needs at least one step")
    width = None
    for t, step in enumerate(trace):
        for key in ("conf", "is_mask", "top", "changed"):
            if key not in step:
                raise ValueError(f"trace step {t} lacks key {key!r}")
            if width is None:
                width = len(step[key])
            if len(step[key]) != width:
                raise ValueError(f"trace step {t}: {key!r} has {len(step[key])} positions, expected {width}")
    if not width:
        raise ValueError("trace steps have no positions")
    return width


def plot_trace_heatmap(
    trace: Sequence[Mapping[str, Sequence]],
    path: str | PathLike[str],
    *,
    title: str = "Decoding trace of one block",
) -> Path:
    """Heatmap of one block's decoding: rows = steps, columns = block positions, colour = conf.

    Each step is a dict with "conf" (floats), "is_mask" (bools: still a mask position), "top" (token strings),
    "changed" (bools: top differs from the previous step), optionally "revoked" (bools: a token sent back to
    open at this step), one entry per block position. Mask positions are greyed and hatched, changed tokens
    outlined in red, revoked positions outlined in orange and marked ↺, and every cell shows its top token.
    The format follows the suffix of `path` (.png or .svg). Returns `path`.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"{path}: the trace heatmap is written as .png or .svg")
    width = _validate_trace(trace)
    steps = len(trace)
    conf = np.array([[float(c) for c in step["conf"]] for step in trace])  # (steps, L)

    fig = Figure(figsize=(min(2.0 + 0.55 * width, 40.0), min(1.5 + 0.4 * steps, 40.0)))
    ax = fig.add_subplot()
    im = ax.imshow(conf, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="confidence of top token", fraction=0.04, pad=0.02)
    fontsize = 7 if width <= 32 else 5
    for t, step in enumerate(trace):
        for j in range(width):
            if step["is_mask"][j]:
                ax.add_patch(Rectangle(
                    (j - 0.5, t - 0.5), 1, 1, facecolor=(0.6, 0.6, 0.6, 0.55), edgecolor=(0.3, 0.3, 0.3, 0.6),
                    hatch="///", linewidth=0,
                ))
            if step["changed"][j]:
                ax.add_patch(Rectangle(
                    (j - 0.45, t - 0.45), 0.9, 0.9, fill=False, edgecolor="red", linewidth=1.6,
                ))
            revoked = bool(step.get("revoked", [False] * width)[j])
            if revoked:
                ax.add_patch(Rectangle(
                    (j - 0.42, t - 0.42), 0.84, 0.84, fill=False, edgecolor="orange", linewidth=2.0, linestyle="--",
                ))
            # white text on the dark end of viridis, black on the light end
            color = "white" if conf[t, j] < 0.6 and not step["is_mask"][j] else "black"
            ax.text(
                j, t, ("↺" if revoked else "") + _display_token(step["top"][j]), ha="center", va="center",
                fontsize=fontsize,
                color=color, parse_math=False,
            )
    ax.set_xlabel("block position")
    ax.set_ylabel("step")
    ax.set_xticks(np.arange(width))
    ax.set_yticks(np.arange(steps))
    ax.tick_params(labelsize=fontsize)
    ax.set_title(title + "  (grey hatched = mask position, red box = token changed, orange dashed ↺ = revoked)",
                 fontsize="small")
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=_DPI, bbox_inches="tight")
    return path
