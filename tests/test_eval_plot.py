"""The results chart: a PNG of the figure's size, one bar group per domain, one colour per model."""

import matplotlib.image
import pytest

from transplant.eval.plot import NAME_CHARS, build_figure, plot_results, short_name
from transplant.eval.report import evaluate

TEXTS = {
    "prose": "The quick brown fox jumps over the lazy dog. " * 8,
    "code": "def transplant(base, donor):\n    return base + donor\n" * 6,
    "mixed": "Über den Wolken. 東京は日本の首都です。\n" * 4,
}


@pytest.fixture(scope="module")
def result(tiny):
    return evaluate([tiny["bl_untied"], tiny["sp_untied"]], tiny["bl_tied"], TEXTS, context=64, stride=32)


def test_png_is_written_at_the_figure_size(result, tmp_path):
    path = tmp_path / "charts" / "results.png"
    plot_results(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    figure = build_figure(result)
    width, height = figure.get_size_inches() * figure.dpi
    assert matplotlib.image.imread(path).shape[:2] == (round(height), round(width))


def test_one_bar_group_per_domain_and_one_colour_per_model(result):
    ratio_ax, bpb_ax = build_figure(result).axes
    groups = [*TEXTS, "overall"]
    compared = [m for m in result["models"] if not m["is_reference"]]
    for ax, models in ((ratio_ax, compared), (bpb_ax, result["models"])):
        assert [label.get_text() for label in ax.get_xticklabels()] == groups
        assert len(ax.containers) == len(models)
        assert all(len(container) == len(groups) for container in ax.containers)
        # every group holds one bar of each model, side by side around the group's tick
        for group in range(len(groups)):
            centres = sorted(c[group].get_x() + c[group].get_width() / 2 for c in ax.containers)
            assert group - 0.5 < centres[0] < centres[-1] < group + 0.5
    colours = {m["name"]: c[0].get_facecolor() for m, c in zip(result["models"], bpb_ax.containers, strict=True)}
    assert len(set(colours.values())) == len(result["models"])
    for model, container in zip(compared, ratio_ax.containers, strict=True):
        assert container[0].get_facecolor() == colours[model["name"]]
        # bars rise or fall from 1.0 to the model's ratio
        expected = [*(model["domains"][d]["bpb_ratio"] for d in TEXTS), model["overall"]["bpb_ratio"]]
        assert [bar.get_y() + bar.get_height() for bar in container] == pytest.approx(expected)
    for model, container in zip(result["models"], bpb_ax.containers, strict=True):
        assert container[-1].get_height() == pytest.approx(model["overall"]["bits_per_byte"])
    assert any(line.get_linestyle() == "--" and list(line.get_ydata()) == [1.0, 1.0] for line in ratio_ax.lines)


def test_title_states_the_ratio_context_and_stride(result):
    title = build_figure(result)._suptitle.get_text()
    assert "bits-per-byte(model) / bits-per-byte(bl_tied)" in title and "context 64, stride 32" in title


def test_without_a_reference_only_bits_per_byte_are_drawn(tiny, tmp_path):
    result = evaluate([tiny["bl_untied"]], None, {"prose": TEXTS["prose"]}, context=64, stride=32)
    [ax] = build_figure(result).axes
    assert [label.get_text() for label in ax.get_xticklabels()] == ["prose", "overall"]
    plot_results(result, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").stat().st_size > 0


def test_names_are_short_and_readable():
    assert short_name("SmolLM2-135M--qwen2--omp") == "SmolLM2-135M--qwen2--omp"
    assert short_name("smollm2-135m-6d39e5ab4ace") == "smollm2-135m"
    assert short_name("/runs/a/model") == "a/model"
    long = short_name("a-very-long-model-folder-name--with-a-donor--and-a-method")
    assert len(long) == NAME_CHARS and long.startswith("a-very-long") and long.endswith("and-a-method")
