"""Each plotting helper returns a Figure with the expected axes and titles (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cellnb import viz  # noqa: E402

RNG = np.random.default_rng(0)
IMG = RNG.random((16, 16)).astype(np.float32)


@pytest.fixture(autouse=True)
def close_all():
    yield
    plt.close("all")


def test_image_panels_grid():
    fig = viz.image_panels({"a": IMG, "b": IMG, "rgb": (RNG.random((16, 16, 3)) * 255).astype(np.uint8)}, ncols=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "rgb"]
    with pytest.raises(ValueError, match="shape"):
        viz.image_panels({"bad": np.zeros((2, 3, 4, 5))})


def test_overlays():
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:5, 2:6] = 1
    fig = viz.overlay_mask(IMG, mask)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "mask: 12 px"
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[1:5, 1:5], labels[8:12, 8:14] = 1, 2
    fig = viz.overlay_contours(IMG, labels)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "2 instances"
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay_mask(IMG, np.zeros((8, 8)))


def test_density_panel_counts_in_titles():
    true = np.zeros((16, 16))
    true[3, 3], true[8, 8] = 1.0, 2.0
    fig = viz.density_panel(IMG, true, true * 0.5)
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title() == "true density, count = 3.0"
    assert fig.axes[2].get_title() == "predicted density, count = 1.5"


def test_training_curves_default_keys():
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0], "lr": 0.1})
    fig = viz.training_curves(hist)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) >= 2
    with pytest.raises(KeyError, match="dice"):
        viz.training_curves(hist, keys=["dice"])


def test_count_scatter_mae_title():
    fig = viz.count_scatter([10, 12, 9], [10, 10, 10])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "MAE = 1.00"


def test_pareto_front_and_figure():
    df = pd.DataFrame({"name": ["a", "b", "c", "d"], "macs": [1.0, 10.0, 5.0, 20.0], "dice": [0.5, 0.9, 0.4, 0.85]})
    # c is dominated by a (cheaper and better), d by b
    assert viz.pareto_front(df.macs, df.dice).tolist() == [True, True, False, False]
    fig = viz.pareto(df, "macs", "dice", "name")
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].texts) == 4
