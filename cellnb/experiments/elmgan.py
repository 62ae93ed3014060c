"""ELMGAN chapter pipeline: data, the four trained models, evaluation and the efficiency benchmarks.

The notebook ``notebooks/elmgan.py`` only configures, calls these functions, plots and explains.
Everything reconstructed (NH loss, CMTD, the restored final FBU) is documented in
:mod:`cellnb.models.elmgan`, :mod:`cellnb.losses.elmgan` and ``book/deviations/elmgan.md``.

Models trained in the same run, on the same data, with the same optimiser (Adam, β = (0.5, 0.999),
the pix2pix/SSRnet setting) and epochs:

- ``elmgan``: LFMMG generator + CMTD (conditional PatchGAN that also sees the count), NH loss
  with the LSGAN term, alternating D/G steps through :func:`cellnb.train.fit_gan`;
- ``elmgan_no_adv``: the same generator, NH loss without the adversarial term (ablation), via
  :func:`cellnb.train.fit`;
- ``unet``: the classic U-Net with a count head (``create_model("unet", heads=("mask", "count"))``),
  same pixel + count loss, no GAN;
- ``pix2pix``: the "traditional GAN": pix2pix U-Net generator (8 levels, ConvTranspose) + the
  conditional PatchGAN on (image, mask), with the same NH weights and a count head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellnb.losses.elmgan import discriminator_loss, nh_loss
from cellnb.models import create_model, outputs
from cellnb.profile import benchmark, count_params

#: Released BBBC005 frames are 520×696; the SSRnet collate zero-pads them to 768×768.
BBBC005_SHAPE = (520, 696)
PADDED_SIDE = 768

SETTINGS: dict[str, dict[str, Any]] = {
    # smoke: a pipeline check (< 1 min on 2 shared cores): 64² frames, one epoch, tiny widths
    "smoke": dict(
        image_size=64, n_train=2, n_test=2, epochs=1, batch_size=2,
        gen_width=4, disc_width=4, unet_width=4, pix2pix_depth=6,
        lr_g=1e-3, lr_d=2e-4, lambda_adv=1.0, lambda_l1=10.0, lambda_l2=0.0, lambda_count=1.0,
        count_scale=50.0, bench_size=64, bench_repeats=1, bench_width=8, block_repeats=1,
    ),
    # quick: CPU minutes. 768² padded frames downscaled ×6 to 128²; slim widths keeping the
    # full-size U-Net : LFMMG parameter ratio (both at base width 8); efficiency at full width, 256².
    "quick": dict(
        image_size=128, n_train=24, n_test=12, epochs=30, batch_size=4,
        gen_width=8, disc_width=8, unet_width=8, pix2pix_depth=7,
        lr_g=1e-3, lr_d=2e-4, lambda_adv=1.0, lambda_l1=10.0, lambda_l2=0.0, lambda_count=1.0,
        count_scale=50.0, bench_size=256, bench_repeats=5, bench_width=64, block_repeats=10,
    ),
    # full: the released set-up (768² padded BBBC005 frames, full widths, batch 1, 30 epochs, lr 1e-4)
    "full": dict(
        image_size=768, n_train=960, n_test=240, epochs=30, batch_size=1,
        gen_width=64, disc_width=64, unet_width=64, pix2pix_depth=8,
        lr_g=1e-4, lr_d=1e-4, lambda_adv=1.0, lambda_l1=10.0, lambda_l2=0.0, lambda_count=1.0,
        count_scale=50.0, bench_size=768, bench_repeats=20, bench_width=64, block_repeats=50,
    ),
}

MODEL_NAMES = ("elmgan", "elmgan_no_adv", "unet", "pix2pix")


# --------------------------------------------------------------------------- data
def pad_and_downscale(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (bottom/right) a 520×696 frame to 768×768 (SSRnet ``collate_fn_bc05``), then
    block-average down to ``size``×``size`` (768 must be a multiple of ``size``).

    The mask is block-averaged and thresholded at 0.5. Cells are not cut, so the count is unchanged.
    """
    if image.shape != mask.shape or image.ndim != 2:
        raise ValueError(f"image and mask must be the same 2-D shape, got {image.shape} and {mask.shape}")
    if image.shape[0] > PADDED_SIDE or image.shape[1] > PADDED_SIDE:
        raise ValueError(f"frames larger than {PADDED_SIDE}² are not supported, got {image.shape}")
    if PADDED_SIDE % size:
        raise ValueError(f"size must divide {PADDED_SIDE}, got {size}")
    from skimage.transform import downscale_local_mean

    factor = PADDED_SIDE // size
    padded = np.zeros((2, PADDED_SIDE, PADDED_SIDE), np.float32)
    padded[0, : image.shape[0], : image.shape[1]] = image
    padded[1, : mask.shape[0], : mask.shape[1]] = mask > 0
    small = downscale_local_mean(padded, (1, factor, factor)).astype(np.float32)
    return small[0], (small[1] >= 0.5).astype(np.float32)


def make_split(n: int, seed: int, size: int) -> dict[str, np.ndarray]:
    """``n`` BBBC005-like frames (``fluorescence_cells(preset="bbbc005", stain=1)``: cell bodies,
    counts drawn from the 24 BBBC005 levels), padded to 768² and downscaled to ``size``².

    Returns ``image`` (n, H, W) float32 [0, 1], ``mask`` (n, H, W) float32 {0, 1}, ``count`` (n,).
    """
    from cellnb.data import fluorescence_cells

    images, masks, counts = [], [], []
    for i in range(n):
        sample = fluorescence_cells(seed + i, preset="bbbc005", stain=1)
        image, mask = pad_and_downscale(sample["image"], sample["mask"], size)
        images.append(image)
        masks.append(mask)
        counts.append(float(sample["count"]))
    return {"image": np.stack(images), "mask": np.stack(masks), "count": np.asarray(counts, np.float32)}


class SegCountDataset(Dataset):
    """Items ``{"image": (1, H, W) normalised, "mask": (1, H, W), "count": ()}`` as tensors."""

    def __init__(self, split: Mapping[str, np.ndarray], mean: float, std: float) -> None:
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.images = torch.from_numpy((split["image"] - mean) / std).float().unsqueeze(1)
        self.masks = torch.from_numpy(split["mask"]).float().unsqueeze(1)
        self.counts = torch.from_numpy(split["count"]).float()

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i], "count": self.counts[i]}


def make_loaders(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], batch_size: int, seed: int):
    """Train/test loaders; the input is standardised with the training mean/std (the released code
    uses BBBC005's 0.387/0.278)."""
    mean, std = float(train["image"].mean()), float(train["image"].std())
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(SegCountDataset(train, mean, std), batch_size=batch_size, shuffle=True, generator=gen)
    test_loader = DataLoader(SegCountDataset(test, mean, std), batch_size=batch_size, shuffle=False)
    return train_loader, test_loader


# --------------------------------------------------------------------------- models
class ScaledCount(nn.Module):
    """Wrap a model so that its ``count`` output is multiplied by ``scale`` (the baselines' count
    heads then start in "count / scale" units like LFMMG's, see :class:`cellnb.models.elmgan.BottleneckCountHead`)."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, float(scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        out[outputs.COUNT] = out[outputs.COUNT] * self.scale
        return out


def init_count_heads(models: Mapping[str, Mapping[str, nn.Module]], mean_count: float, scale: float) -> None:
    """Start every count head at the training-mean count (same treatment for all models).

    LFMMG / pix2pix heads are linear (bias = mean / scale); the U-Net head is softplus(linear)
    (bias = softplus⁻¹(mean / scale)). Without this, a head initialised at 0 needs hundreds of
    steps just to reach the typical count, far more than the CPU profiles train.
    """
    target = float(mean_count) / float(scale)
    if target <= 0:
        raise ValueError(f"mean count must be positive, got {mean_count}")
    with torch.no_grad():
        for pair in models.values():
            g = pair["generator"]
            if isinstance(g, ScaledCount):
                g.model.count_fc.bias.fill_(float(np.log(np.expm1(target))))
            else:
                g.count_head.conv.bias.fill_(target)


def build_models(cfg: Mapping[str, Any], mean_count: float | None = None) -> dict[str, dict[str, nn.Module]]:
    """``{name: {"generator": G, "discriminator": D or None}}`` for the four compared models;
    with ``mean_count`` the count heads start at that count (:func:`init_count_heads`)."""
    cs = cfg["count_scale"]
    lfmmg = lambda: create_model("elmgan_generator", in_channels=1, base_width=cfg["gen_width"], count_scale=cs)  # noqa: E731
    models = {
        "elmgan": {"generator": lfmmg(),
                   "discriminator": create_model("elmgan_discriminator", in_channels=1, base_width=cfg["disc_width"],
                                                 count_scale=cs)},
        "elmgan_no_adv": {"generator": lfmmg(), "discriminator": None},
        "unet": {"generator": ScaledCount(create_model("unet", in_channels=1, base_width=cfg["unet_width"],
                                                       heads=("mask", "count")), cs),
                 "discriminator": None},
        "pix2pix": {"generator": create_model("pix2pix_generator", in_channels=1, base_width=cfg["gen_width"],
                                              depth=cfg["pix2pix_depth"], count_scale=cs),
                    "discriminator": create_model("patchgan_discriminator", in_channels=1, base_width=cfg["disc_width"])},
    }
    if mean_count is not None:
        init_count_heads(models, mean_count, cs)
    return models


# --------------------------------------------------------------------------- losses for train.fit / fit_gan
def _probs(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.sigmoid(out[outputs.MASK_LOGITS])


def make_g_loss(cfg: Mapping[str, Any], adversarial: bool) -> Callable:
    """``g_loss(outputs, batch, d_fake)`` for :func:`cellnb.train.fit_gan` (NH loss)."""
    weights = dict(lambda_adv=cfg["lambda_adv"] if adversarial else 0.0, lambda_l1=cfg["lambda_l1"],
                   lambda_l2=cfg["lambda_l2"], lambda_count=cfg["lambda_count"], count_scale=cfg["count_scale"])

    def g_loss(out, batch, d_fake=None):
        return nh_loss(_probs(out), batch["mask"], out[outputs.COUNT], batch["count"], d_fake, **weights)

    return g_loss


def make_supervised_loss(cfg: Mapping[str, Any]) -> Callable:
    """``loss_fn(outputs, batch)`` for :func:`cellnb.train.fit`: the NH loss without its adversarial term."""
    g_loss = make_g_loss(cfg, adversarial=False)
    return lambda out, batch: g_loss(out, batch, None)


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor):
    """LSGAN discriminator loss (:func:`cellnb.losses.elmgan.discriminator_loss`)."""
    return discriminator_loss(d_real, d_fake)


def discriminator_inputs(with_count: bool):
    """``(real_inputs, fake_inputs)`` for fit_gan: D sees (image, mask[, count])."""
    if with_count:
        return (lambda b: (b["image"], b["mask"], b["count"]),
                lambda b, o: (b["image"], _probs(o), o[outputs.COUNT]))
    return (lambda b: (b["image"], b["mask"]), lambda b, o: (b["image"], _probs(o)))


# --------------------------------------------------------------------------- training
@dataclass
class Trained:
    """One trained model with its history, its snapshots and its training time."""

    generator: nn.Module
    history: pd.DataFrame
    seconds: float
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)


def _snapshot(model: nn.Module, image: torch.Tensor) -> np.ndarray:
    was = model.training
    model.eval()
    with torch.no_grad():
        prob = _probs(model(image[None].to(next(model.parameters()).device)))[0, 0].cpu().numpy()
    model.train(was)
    return prob


def train_all(cfg: Mapping[str, Any], train_loader, snapshot_image: torch.Tensor, device: str = "auto",
              seed: int = 0, only: tuple[str, ...] = MODEL_NAMES) -> dict[str, Trained]:
    """Train each compared model (same seed, same data order) and keep per-epoch snapshots of its
    segmentation on ``snapshot_image`` (1, H, W)."""
    from cellnb import train
    from cellnb.utils import seed_everything

    seed_everything(seed)
    models = build_models(cfg, mean_count=float(train_loader.dataset.counts.mean()))
    trained: dict[str, Trained] = {}
    for name in only:
        seed_everything(seed)
        train_loader.generator.manual_seed(seed) if getattr(train_loader, "generator", None) else None
        g, d = models[name]["generator"], models[name]["discriminator"]
        snaps: list[tuple[int, np.ndarray]] = []
        t0 = time.perf_counter()
        if d is not None:
            real_in, fake_in = discriminator_inputs(with_count=name == "elmgan")
            history = train.fit_gan(
                g, d, train_loader, make_g_loss(cfg, adversarial=True), d_loss,
                epochs=cfg["epochs"], lr_g=cfg["lr_g"], lr_d=cfg["lr_d"], betas=(0.5, 0.999),
                real_inputs=real_in, fake_inputs=fake_in, device=device, progress=False,
                epoch_callback=lambda e, gen, dis: snaps.append((e, _snapshot(gen, snapshot_image))),
            )
        else:
            history = train.fit(
                g, train_loader, make_supervised_loss(cfg), epochs=cfg["epochs"], lr=cfg["lr_g"],
                betas=(0.5, 0.999), device=device, progress=False,
                epoch_callback=lambda e, gen: snaps.append((e, _snapshot(gen, snapshot_image))),
            )
        trained[name] = Trained(g, history, time.perf_counter() - t0, snaps)
    return trained


# --------------------------------------------------------------------------- evaluation
def predict(model: nn.Module, loader, device: str = "auto") -> dict[str, np.ndarray]:
    """Mask probabilities (N, H, W) and counts (N,) on ``loader``, with the true masks and counts."""
    from cellnb.train import predict as _predict

    out = _predict(model, loader, device=device)
    masks = torch.cat([b["mask"] for b in loader])[:, 0].numpy()
    counts = torch.cat([b["count"] for b in loader]).numpy()
    return {"prob": torch.sigmoid(out[outputs.MASK_LOGITS])[:, 0].numpy(), "count": out[outputs.COUNT].numpy(),
            "true_mask": masks, "true_count": counts}


def evaluate(pred: Mapping[str, np.ndarray], threshold: float = 0.5) -> dict[str, float]:
    """Count MAE/RMSE (:mod:`cellnb.metrics.counting`) and mean per-image Dice/IoU of the mask
    thresholded at ``threshold`` (:mod:`cellnb.metrics.pixel`)."""
    from cellnb.metrics.counting import count_mae, count_rmse
    from cellnb.metrics.pixel import dice, iou

    binary = pred["prob"] >= threshold
    truth = pred["true_mask"] > 0.5
    return {
        "count_mae": count_mae(pred["count"], pred["true_count"]),
        "count_rmse": count_rmse(pred["count"], pred["true_count"]),
        "dice": float(np.mean([dice(p, t) for p, t in zip(binary, truth)])),
        "iou": float(np.mean([iou(p, t) for p, t in zip(binary, truth)])),
    }


# --------------------------------------------------------------------------- efficiency
def parameter_table(in_channels: int = 1) -> pd.DataFrame:
    """Parameters of the full-width (released-size) models: LFMMG, classic U-Net with a count head,
    pix2pix generator, CMTD and PatchGAN (built on the ``meta`` device: no memory, no init cost)."""
    with torch.device("meta"):
        rows = _full_width_models(in_channels)
    return pd.DataFrame({"model": [r[0] for r in rows], "params": [count_params(r[1]) for r in rows]})


def _full_width_models(in_channels: int) -> list[tuple[str, nn.Module]]:
    return [
        ("LFMMG (ELMGAN generator)", create_model("elmgan_generator", in_channels=in_channels)),
        ("classic U-Net + count head", create_model("unet", in_channels=in_channels, heads=("mask", "count"))),
        ("pix2pix U-Net generator", create_model("pix2pix_generator", in_channels=in_channels)),
        ("CMTD (discriminator)", create_model("elmgan_discriminator", in_channels=in_channels)),
        ("PatchGAN (pix2pix discriminator)", create_model("patchgan_discriminator", in_channels=in_channels)),
    ]


def benchmark_ms(models: Mapping[str, nn.Module], input_shape, device: str = "cpu", warmup: int = 2,
                 repeats: int = 5) -> dict[str, float]:
    """Median forward latency in ms per model, measured interleaved by :func:`cellnb.profile.benchmark`."""
    df = benchmark(dict(models), tuple(input_shape), device=device, warmup=warmup, repeats=repeats)
    return dict(zip(df["model"], df["median_ms"].astype(float)))


class _Upsampler(nn.Module):
    """Just the up-sampling of one decoder block (what the FBU claim is about)."""

    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        from cellnb.models.elmgan import make_upsampler

        self.up = make_upsampler(cin, cout, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def generator_upsampling_sizes(image_size: int, base_width: int = 64) -> list[tuple[str, int, int, int]]:
    """``(block, C_in, C_out, input side)`` of every ×2 up-sampling in LFMMG at ``image_size``."""
    w = [base_width * min(2**i, 8) for i in range(6)]
    plan = [("up1", w[5], w[4]), ("up2", 2 * w[4], w[3]), ("up3", 2 * w[3], w[2]),
            ("up4", 2 * w[2], w[1]), ("up5", 2 * w[1], w[0]), ("head", max(w[0] // 2, 1), 1)]
    sides = [image_size // 2**k for k in (6, 5, 4, 3, 2, 1)]
    return [(name, cin, cout, side) for (name, cin, cout), side in zip(plan, sides)]


def benchmark_upsampling(image_size: int, base_width: int = 64, device: str = "cpu", repeats: int = 10) -> pd.DataFrame:
    """FBU vs (1×1 conv + nearest) vs (1×1 conv + bilinear) at each size LFMMG uses, batch 1.

    Both sides do the same channel projection; FBU does it to C_out·4 channels at low resolution
    and folds, the interpolation blocks do it to C_out channels and then interpolate.
    """
    rows = []
    for name, cin, cout, side in generator_upsampling_sizes(image_size, base_width):
        mods = {mode: _Upsampler(cin, cout, mode) for mode in ("fbu", "nearest", "bilinear")}
        ms = benchmark_ms(mods, (1, cin, side, side), device=device, warmup=2, repeats=repeats)
        rows.append({"block": name, "c_in": cin, "c_out": cout, "input": f"{side}x{side}",
                     **{f"{k}_ms": v for k, v in ms.items()}})
    df = pd.DataFrame(rows)
    total = {"block": "total", "c_in": np.nan, "c_out": np.nan, "input": "",
             **{c: df[c].sum() for c in ("fbu_ms", "nearest_ms", "bilinear_ms")}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def benchmark_generators(image_size: int, base_width: int = 64, device: str = "cpu", repeats: int = 5,
                         pix2pix_depth: int = 8) -> pd.DataFrame:
    """Forward latency (batch 1) and images/s of LFMMG with FBU / bilinear / nearest up-blocks and of
    the pix2pix U-Net generator, all at ``base_width`` (64 = released size)."""
    models = {
        "LFMMG (FBU)": create_model("elmgan_generator", base_width=base_width),
        "LFMMG (bilinear)": create_model("elmgan_generator", base_width=base_width, upsampling="bilinear"),
        "LFMMG (nearest)": create_model("elmgan_generator", base_width=base_width, upsampling="nearest"),
        "pix2pix generator": create_model("pix2pix_generator", base_width=base_width, depth=pix2pix_depth),
    }
    ms = benchmark_ms(models, (1, 1, image_size, image_size), device=device, warmup=2, repeats=repeats)
    return pd.DataFrame({"model": list(ms), "ms": list(ms.values()),
                         "images_per_s": [1000.0 / v for v in ms.values()],
                         "params": [count_params(models[k]) for k in ms]})


def train_step_seconds(trained: Mapping[str, Trained]) -> dict[str, float]:
    """Mean wall-clock seconds per training epoch of each trained model."""
    return {k: float(t.history["seconds"].mean()) for k, t in trained.items()}
