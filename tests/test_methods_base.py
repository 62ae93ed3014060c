"""The method layer's shared machinery: padding, tiled prediction with blending, the registry."""

import pytest
import torch
import torch.nn.functional as F

from cellnb.methods import base


class Echo(torch.nn.Module):
    """Identity density, nearest x2 super-resolution and a global count: blending must be exact."""

    def forward(self, x):
        return {"density": x * 1.0, "sr_image": F.interpolate(x, scale_factor=2, mode="nearest"),
                "count": x.sum(dim=(1, 2, 3))}


@pytest.mark.parametrize("shape", [(30, 40), (67, 101), (150, 170)])
def test_tiled_prediction_blends_exactly_and_keeps_the_sr_scale(shape):
    x = torch.rand(1, 1, *shape)
    out = base.predict_tiled(Echo(), x, multiple=16, tile=64, overlap=16, scale=2)
    assert out["density"].shape == x.shape
    assert out["sr_image"].shape == (1, 1, 2 * shape[0], 2 * shape[1])
    assert torch.allclose(out["density"], x, atol=1e-5)
    assert torch.allclose(out["sr_image"], F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-5)
    assert float(out["count"]) == pytest.approx(float(x.sum()), rel=1e-4)


def test_pad_to_multiple():
    x = torch.rand(1, 1, 67, 101)
    padded, hw = base.pad_to_multiple(x, 32)
    assert padded.shape[-2:] == (96, 128) and hw == (67, 101)
    assert torch.equal(padded[..., :67, :101], x)


def test_registry_errors_list_the_choices():
    from cellnb.methods import get_method, list_methods

    with pytest.raises(ValueError, match="unknown method 'nope'; choose from"):
        get_method("nope")
    with pytest.raises(ValueError, match="unknown task 'segment'"):
        list_methods("segment")
    assert "classical" in list_methods("instances") and "classical" not in list_methods("sr")


def test_evaluation_steps_are_evenly_spaced_and_end_at_the_last_step():
    from cellnb.methods.training import evaluation_steps

    for steps, n in ((1000, 16), (3000, 16), (75, 10), (150, 10), (8, 8)):
        at = sorted(evaluation_steps(steps, n))
        assert len(at) == n and at[-1] == steps
        gaps = __import__("numpy").diff([0] + at)
        assert gaps.max() - gaps.min() <= 1  # no near-copy of the last point (e.g. 992 and 1000)
    assert sorted(evaluation_steps(5, 10)) == [1, 2, 3, 4, 5]  # never more evaluations than steps
    with pytest.raises(ValueError, match=">= 1"):
        evaluation_steps(0, 4)
