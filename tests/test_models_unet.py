"""U-Net contract: shapes per head, classic size, clear errors, and a smoke training run."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cellnb import profile, train
from cellnb.losses.functional import bce_dice_loss, multitask
from cellnb.models import create_model, outputs
from cellnb.models.unet import UNet
from cellnb.utils import seed_everything


@pytest.mark.parametrize("size", [16, 32, (32, 48)])
def test_shapes_all_heads(size):
    h, w = (size, size) if isinstance(size, int) else size
    model = UNet(in_channels=3, num_classes=2, base_width=4, depth=3,
                 heads=("mask", "density", "boundary", "marker", "count")).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w))
    assert out[outputs.MASK_LOGITS].shape == (2, 2, h, w)
    for key in (outputs.DENSITY, outputs.BOUNDARY_LOGITS, outputs.MARKER_LOGITS):
        assert out[key].shape == (2, 1, h, w)
    assert out[outputs.COUNT].shape == (2,)
    assert (out[outputs.DENSITY] >= 0).all() and (out[outputs.COUNT] >= 0).all()


def test_bilinear_and_single_head():
    model = create_model("unet", base_width=4, depth=2, heads=("density",), upsampling="bilinear").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 8, 8))
    assert set(out) == {outputs.DENSITY} and out[outputs.DENSITY].shape == (1, 1, 8, 8)


def test_classic_param_count():
    # Ronneberger et al. 2015 with BatchNorm ("same" padding, bias-free convs): 31.04 M
    n = profile.count_params(create_model("unet"))
    assert n == pytest.approx(31.04e6, rel=0.01)
    assert n == 31_036_481
    slim = profile.count_params(create_model("unet", base_width=16))
    assert slim == pytest.approx(n / 16, rel=0.01)  # widths / 4 -> params / 16


def test_clear_errors():
    model = UNet(in_channels=1, base_width=4, depth=2)
    with pytest.raises(ValueError, match="1 input channel"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 1, 10, 8))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="unknown or empty heads.*'seg'"):
        UNet(heads=("seg",))
    with pytest.raises(KeyError, match="unknown model"):
        create_model("unet3000")


def _cells(n: int, size: int, seed: int) -> dict:
    """Generated fluorescence cells (cellnb.data) or, without it, random bright discs."""
    try:
        from cellnb.data import fluorescence_batch

        batch = fluorescence_batch(n, seed=seed, size=(size, size))
        return {"image": batch["image"], "mask": batch["mask"]}
    except ImportError:  # pragma: no cover - before cellnb.data existed
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        masks = np.zeros((n, size, size), np.uint8)
        for i in range(n):
            for _ in range(4):
                r, c = rng.uniform(3, size - 3, 2)
                masks[i] |= ((yy - r) ** 2 + (xx - c) ** 2 <= 9).astype(np.uint8)
        images = np.clip(masks * 0.8 + rng.normal(0, 0.05, masks.shape), 0, 1).astype(np.float32)
        return {"image": images, "mask": masks}


class CellSet(Dataset):
    def __init__(self, arrays):
        self.images = torch.from_numpy(arrays["image"]).float()[:, None]
        self.masks = torch.from_numpy(arrays["mask"]).float()[:, None]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "mask": self.masks[i]}


def test_slim_unet_trains_on_generated_cells():
    seed_everything(0)
    data = CellSet(_cells(8, 32, seed=0))
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = create_model("unet", base_width=8, depth=2)
    loss_fn = multitask({"bce_dice": (outputs.MASK_LOGITS, "mask", bce_dice_loss, 1.0)})
    hist = train.fit(model, loader, loss_fn, epochs=6, lr=1e-2, device="cpu", progress=False)
    assert len(hist) == 6 and np.isfinite(hist.train_loss).all()
    assert hist.train_loss.iloc[-1] < 0.8 * hist.train_loss.iloc[0]
