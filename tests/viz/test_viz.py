"""xpcnn.viz: every plot returns a Figure for data from the backend under test; class activation maps."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import xpcnn  # noqa: E402
from xpcnn import viz  # noqa: E402
from xpcnn.layers.activations import ReLU  # noqa: E402
from xpcnn.layers.conv import Conv2D  # noqa: E402
from xpcnn.layers.dense import Dense  # noqa: E402
from xpcnn.layers.pool import GlobalAvgPool2D, MaxPool2D  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _is_figure(fig) -> bool:
    from matplotlib.figure import Figure

    return isinstance(fig, Figure)


def _rendered(fig) -> np.ndarray:
    """The figure drawn into an RGBA array (what savefig would write)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- plot_history --------------------------------------------------------------------------------------

HISTORY = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.8, 0.9], "val_loss": [1.1, 0.7, 0.5],
           "val_accuracy": [0.45, 0.75, 0.85]}


def test_plot_history_from_dict_has_loss_and_accuracy_panels():
    fig = viz.plot_history(HISTORY)
    assert _is_figure(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert _rendered(fig).std() > 0


def test_plot_history_from_history_object_and_device_scalars(backend):
    class History:  # what Model.fit returns: the logs under .history, the 0-based epochs under .epoch
        history = {"loss": [backend.xp.asarray(0.9, device=backend.device), 0.5], "acc": [0.6, 0.7],
                   "lr": [1e-3, 1e-3]}
        epoch = [4, 5]

    fig = viz.plot_history(History())
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]  # a constant lr is not plotted
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [5, 6])
    fig = viz.plot_history({"loss": [0.9, 0.5], "lr": [1e-3, 1e-4]})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]


def test_plot_history_rejects_empty_and_wrong_types():
    with pytest.raises(ValueError, match="no values"):
        viz.plot_history({"loss": []})
    with pytest.raises(TypeError, match="History"):
        viz.plot_history([0.1, 0.2])


# --- feature maps, filters, images ---------------------------------------------------------------------

def test_plot_feature_maps_single_sample(backend):
    fig = viz.plot_feature_maps(xpcnn.asarray(_rand((5, 6, 7))), title="maps")
    assert _is_figure(fig)
    assert sum(bool(ax.images) for ax in fig.axes) == 5


def test_plot_feature_maps_batch_is_one_row_per_sample(backend):
    fig = viz.plot_feature_maps(xpcnn.asarray(_rand((2, 3, 6, 6))), max_channels=2)
    assert sum(bool(ax.images) for ax in fig.axes) == 4


def test_plot_feature_maps_stages_of_different_sizes(backend):
    stages = {"input": xpcnn.asarray(_rand((1, 1, 12, 12))), "conv": xpcnn.asarray(_rand((1, 4, 10, 10))),
              "pool": xpcnn.asarray(_rand((4, 5, 5)))}
    fig = viz.plot_feature_maps(stages)
    assert len(fig.axes) == 3 * 4
    assert sum(bool(ax.images) for ax in fig.axes) == 1 + 4 + 4
    assert _rendered(fig).std() > 0


def test_plot_feature_maps_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        viz.plot_feature_maps(np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="no maps"):
        viz.plot_feature_maps({})


def test_plot_filters_of_a_conv_layer(backend):
    layer = Conv2D(6, 3)
    layer.build((1, 8, 8))
    fig = viz.plot_filters(layer)
    assert _is_figure(fig)
    assert sum(bool(ax.images) for ax in fig.axes) == 6


def test_plot_filters_multichannel_grid_and_unbuilt_layer(backend):
    layer = Conv2D(3, 3)
    layer.build((2, 8, 8))
    fig = viz.plot_filters(layer)
    assert sum(bool(ax.images) for ax in fig.axes) == 3 * 2
    with pytest.raises(ValueError, match="build"):
        viz.plot_filters(Conv2D(3, 3))


def test_plot_images_batch_and_rows(backend):
    batch = xpcnn.asarray(np.random.default_rng(0).uniform(size=(4, 1, 8, 8)))
    fig = viz.plot_images(batch, labels=[0, 1, 2, 3])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["0", "1", "2", "3"]
    colour = xpcnn.asarray(np.random.default_rng(1).uniform(size=(3, 3, 8, 8)))
    fig = viz.plot_images({"before": colour, "after": colour})
    assert sum(bool(ax.images) for ax in fig.axes) == 6


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r'pip install "xpcnn\[examples\]"'):
        viz.plot_history(HISTORY)


def test_plot_class_activation_maps(backend):
    layers = [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(5, 3, padding=1), ReLU(), GlobalAvgPool2D(),
              Dense(3)]
    x = xpcnn.asarray(np.random.default_rng(0).uniform(size=(4, 1, 8, 8)))
    cams, predicted = viz.class_activation_map(layers, x)
    fig = viz.plot_class_activation_maps(x, cams, predicted, labels=[0, 1, 2, 0])
    assert _is_figure(fig)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 4 and all(t.startswith("pred ") and "/ true " in t for t in titles)
    with pytest.raises(ValueError, match="do not match"):
        viz.plot_class_activation_maps(x, cams[:2])
    colour = np.random.default_rng(1).uniform(size=(4, 3, 8, 8)).astype(np.float32)
    fig = viz.plot_class_activation_maps(colour, cams, predicted, labels=[0, 1, 2, 0],
                                         class_names=["cat", "dog", "owl"])
    names = ("cat", "dog", "owl")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == [f"pred {names[p]} / true {names[t]}" for p, t in zip(predicted, [0, 1, 2, 0])]


@pytest.mark.parametrize(("names", "ncols", "shape"), [
    (["circles", "squares"], 8, (3, 16, 16)),         # the cats_vs_dogs --quick picture
    (["7", "9"], 8, (1, 28, 28)),                     # MNIST: short titles stay on one line
    (["a rather long class name", "x"], 5, (3, 8, 12)),  # wider than the image, and not square
    (["cat", "an even longer name for the other class"], 3, (1, 16, 8)),
])
def test_plot_class_activation_maps_titles_never_overlap(names, ncols, shape):
    rng = np.random.default_rng(0)
    n = 2 * ncols - 1  # an incomplete last row
    images = rng.uniform(size=(n,) + shape).astype(np.float32)
    maps = rng.uniform(size=(n,) + shape[1:]).astype(np.float32)
    predicted, labels = np.arange(n) % 2, (np.arange(n) // 2) % 2
    fig = viz.plot_class_activation_maps(images, maps, predicted, labels=labels, ncols=ncols, class_names=names,
                                         title="Class activation maps")
    fig.canvas.draw()
    shown = [ax for ax in fig.axes if ax.images]
    titles = [ax.title.get_window_extent() for ax in shown]
    assert len(titles) == n
    for i, box in enumerate(titles):
        assert not any(box.overlaps(other) for other in titles[i + 1:]), "two titles overlap"
        assert not any(box.overlaps(ax.get_window_extent()) for ax in shown), "a title runs into an image"
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    suptitle = fig._suptitle.get_window_extent()
    assert not any(suptitle.overlaps(box) for box in titles)
    texts = [ax.get_title() for ax in shown]
    one_line = [f"pred {names[p]} / true {names[t]}" for p, t in zip(predicted, labels)]
    if len(max(names, key=len)) == 1:
        assert texts == one_line
    else:  # prediction and truth on two lines, in every panel
        assert texts == [t.replace(" / ", "\n") for t in one_line]
