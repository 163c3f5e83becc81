"""Plots: every function writes non-empty, valid PNG / SVG files."""

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import pytest

from workbench.results.plots import plot_accuracy_vs_tpf, plot_aup_bars, plot_trace_heatmap

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_valid(path: Path):
    assert path.exists() and path.stat().st_size > 0
    if path.suffix == ".png":
        assert path.read_bytes()[:8] == PNG_MAGIC
        h, w = matplotlib.image.imread(path).shape[:2]
        assert h > 50 and w > 50
    else:
        assert path.suffix == ".svg"
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")


def test_accuracy_vs_tpf(tmp_path):
    curves = {
        "spd x oput": [(2.0, 90.0), (4.5, 88.0), (5.5, 86.5)],
        "threshold x mdlm": [(1.5, 91.0), (2.5, 89.0)],
        "hard x oput": [(3.0, 70.0)],
    }
    paths = plot_accuracy_vs_tpf(curves, tmp_path / "figs")
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    for p in paths:
        _assert_valid(p)
    # every curve label is in the legend
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert all(label in svg for label in curves)


def test_aup_bars(tmp_path):
    paths = plot_aup_bars({"spd x oput": 412.3, "threshold x mdlm": 230.0, "collapsed": 0.0}, tmp_path)
    assert len(paths) == 2
    for p in paths:
        _assert_valid(p)


def test_trace_heatmap(tmp_path):
    trace = [
        {"conf": [0.9, 0.2, 0.1, 0.05], "is_mask": [False, True, True, True], "top": ["a", "$x$", "\n", ""],
         "changed": [False, False, False, False]},
        {"conf": [0.95, 0.7, 0.3, 0.2], "is_mask": [False, False, True, True], "top": ["b", "longtoken", " ", "z"],
         "changed": [True, False, False, False]},
        {"conf": [0.99, 0.97, 0.96, 0.91], "is_mask": [False, False, False, False], "top": ["b", "c", "d", "e"],
         "changed": [False, True, False, False]},
    ]
    for name in ("trace.png", "trace.svg"):
        path = plot_trace_heatmap(trace, tmp_path / name)
        assert path == tmp_path / name
        _assert_valid(path)


def test_trace_heatmap_rejects_ragged_or_unknown_format(tmp_path):
    step = {"conf": [0.5, 0.5], "is_mask": [True, True], "top": ["a", "b"], "changed": [False, False]}
    with pytest.raises(ValueError, match="positions"):
        plot_trace_heatmap([step, {**step, "conf": [0.5]}], tmp_path / "t.png")
    with pytest.raises(ValueError, match="png or .svg"):
        plot_trace_heatmap([step], tmp_path / "t.pdf")
    with pytest.raises(ValueError):
        plot_trace_heatmap([], tmp_path / "t.png")
