"""Bar chart of an evaluation result (`transplant eval --plot results.png`).

One group of bars per domain plus "overall", one colour per model. With a reference, the top panel is
the bits-per-byte ratio against it, bars drawn from the dashed line at 1.0 so that worse points up
and better points down; the bottom panel is absolute bits-per-byte, reference included. The figure is
drawn on its own Agg canvas, so pyplot's global state and the user's backend are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

DPI = 120
NAME_CHARS = 32
MAX_WIDTH = 20.0  # inches; past it bars get narrower and their labels turn upright
REFERENCE_COLOUR = "0.55"
# 12 hex digits: the fingerprint transplant.sources appends to folders it builds in the cache
_FINGERPRINT = re.compile(r"-[0-9a-f]{12}$")


def short_name(name: str) -> str:
    """A legend label: the folder name (with its parent for a whole path), no cache fingerprint,
    the middle elided past NAME_CHARS characters."""
    label = _FINGERPRINT.sub("", "/".join(Path(name).parts[-2:]))
    if len(label) <= NAME_CHARS:
        return label
    keep = NAME_CHARS - 1
    return label[: (keep + 1) // 2] + "…" + label[-(keep // 2) :]


def build_figure(result: dict) -> Figure:
    """The chart of an `evaluate` result, as a Figure on an Agg canvas."""
    groups = [*result["texts"], "overall"]
    models = result["models"]
    colours = _colours(models)
    compared = [m for m in models if not m["is_reference"]] if result["reference"] is not None else []
    panels = 2 if compared else 1
    width = min(MAX_WIDTH, max(8.0, 1.2 + len(groups) * (0.34 * len(models) + 0.45)))
    # a value label is about 0.3 inch wide: on narrower bars it is turned upright
    upright = (width - 1.2) / len(groups) * 0.8 / len(models) < 0.3
    figure = Figure(figsize=(width, 1.6 + 3.6 * panels), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    if compared:
        _ratio_panel(axes[0], groups, compared, colours, result["reference"], upright)
    _bpb_panel(axes[-1], groups, models, colours, upright)
    handles = [Patch(facecolor=colours[m["name"]]) for m in models]
    labels = [short_name(m["name"]) + ("  (reference)" if m["is_reference"] else "") for m in models]
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(models), 5), frameon=False)
    figure.suptitle(_title(result), fontsize=11)
    return figure


def plot_results(result: dict, path: str | Path) -> None:
    """Write the chart of an `evaluate` result to `path` (PNG, or any format its suffix names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_figure(result).savefig(path)


def _title(result: dict) -> str:
    setting = f"context {result['context']}, stride {result['stride']}, {result['dtype']}"
    if result["reference"] is None:
        return f"bits per byte = NLL / (ln 2 · UTF-8 bytes); lower is better\n{setting}"
    return (
        f"bpb ratio = bits-per-byte(model) / bits-per-byte({short_name(result['reference'])}) on the same text\n"
        f"below 1 is better; {setting}; overall pools every domain"
    )


def _colours(models: list[dict]) -> dict[str, str]:
    # C7 is the default cycle's grey, kept for the reference
    palette = [f"C{i}" for i in range(10) if i != 7]
    others = iter(palette * (len(models) // len(palette) + 1))
    return {m["name"]: REFERENCE_COLOUR if m["is_reference"] else next(others) for m in models}


def _offsets(n_bars: int) -> tuple[list[float], float]:
    bar = 0.8 / n_bars
    return [(i - (n_bars - 1) / 2) * bar for i in range(n_bars)], bar


def _cell(model: dict, group: str) -> dict:
    return model["overall"] if group == "overall" else model["domains"][group]


def _ratio_panel(
    ax: Axes, groups: list[str], models: list[dict], colours: dict, reference: str, upright: bool
) -> None:
    offsets, bar = _offsets(len(models))
    values = []
    for model, offset in zip(models, offsets, strict=True):
        ratios = [_cell(model, g)["bpb_ratio"] for g in groups]
        values += ratios
        bars = ax.bar(
            [x + offset for x in range(len(groups))],
            [r - 1.0 for r in ratios],
            bar,
            bottom=1.0,
            color=colours[model["name"]],
        )
        ax.bar_label(bars, labels=[f"{r:.3f}" for r in ratios], fontsize=7, padding=2, rotation=90 * upright)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    low, high = min(1.0, *values), max(1.0, *values)
    pad = max((high - low) * (0.3 if upright else 0.18), 0.01)
    ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel(f"bpb ratio vs {short_name(reference)}")
    ax.set_title("bits-per-byte ratio against the reference (dashed line: as good as it)", loc="left", fontsize=10)
    _style(ax, groups)


def _bpb_panel(ax: Axes, groups: list[str], models: list[dict], colours: dict, upright: bool) -> None:
    offsets, bar = _offsets(len(models))
    top = 0.0
    for model, offset in zip(models, offsets, strict=True):
        bpb = [_cell(model, g)["bits_per_byte"] for g in groups]
        top = max(top, *bpb)
        bars = ax.bar([x + offset for x in range(len(groups))], bpb, bar, color=colours[model["name"]])
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in bpb], fontsize=7, padding=2, rotation=90 * upright)
    ax.set_ylim(0, top * (1.2 if upright else 1.12))
    ax.set_ylabel("bits per byte")
    ax.set_title("absolute bits per byte", loc="left", fontsize=10)
    _style(ax, groups)


def _style(ax: Axes, groups: list[str]) -> None:
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    # overall is not a domain of its own: a rule sets it apart
    ax.axvline(len(groups) - 1.5, color="0.7", linewidth=0.8, linestyle=":")
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
