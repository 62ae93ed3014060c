"""fit / fit_gan / predict on tiny problems (CPU, well under a second each)."""

import math

import numpy as np

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellnb import train
from cellnb.losses.functional import bce_dice_loss, multitask
from cellnb.utils import seed_everything


class Blobs(Dataset):
    """Images whose bright pixels are the mask: learnable by a 1x1 conv."""

    def __init__(self, n=16, size=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 1, size, size, generator=g)
        self.masks = (self.images > 0.5).float()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "mask": self.masks[i], "count": self.masks[i].sum()}


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(0.2)  # consumes RNG: resume must restore it
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        logits = self.head(self.drop(torch.relu(self.conv(x))))
        return {"mask_logits": logits, "count": torch.sigmoid(logits).sum(dim=(1, 2, 3))}


LOSS = multitask({"seg": ("mask_logits", "mask", bce_dice_loss, 1.0)})


def make(seed=0, n=16):
    seed_everything(seed)
    model = TinySeg()
    loader = DataLoader(Blobs(n), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return model, loader


def crashing(loss, at_call: int):
    """``loss`` that raises KeyboardInterrupt at its ``at_call``-th call (an interrupted run)."""
    calls = {"n": 0}

    def crashing_loss(outputs, batch):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return loss(outputs, batch)

    return crashing_loss


def no_time(df):
    return df.drop(columns=["seconds"])


def test_fit_loss_falls_and_history_columns():
    model, loader = make()
    val = DataLoader(Blobs(8, seed=1), batch_size=4)
    hist = train.fit(model, loader, LOSS, epochs=4, lr=0.05, val_loader=val, device="cpu", progress=False,
                     val_fn=lambda m, vl, d: {"mae": 1.0, "val_dice": 0.5})
    assert list(hist.columns) == ["epoch", "train_loss", "seg", "val_loss", "val_seg", "val_mae", "val_dice", "lr", "seconds"]
    assert list(hist.epoch) == [1, 2, 3, 4]
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    assert hist.train_loss.tolist() == pytest.approx(hist.seg.tolist())  # single term, weight 1
    assert hist.attrs["stop_reason"] == "completed"
    assert (hist.lr == 0.05).all()


def test_fit_is_deterministic_on_cpu():
    runs = []
    for _ in range(2):
        model, loader = make(seed=3)
        runs.append(no_time(train.fit(model, loader, LOSS, epochs=2, device="cpu", progress=False)))
    pd.testing.assert_frame_equal(runs[0], runs[1])


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    model, loader = make(seed=5)
    full = train.fit(model, loader, LOSS, epochs=4, lr=0.02, device="cpu", scheduler="cosine", progress=False)
    full_weights = {k: v.clone() for k, v in model.state_dict().items()}

    ckpt = tmp_path / "run.pt"
    model, loader = make(seed=5)
    with pytest.raises(KeyboardInterrupt):  # 4 batches per epoch: call 10 is in epoch 3
        train.fit(model, loader, crashing(LOSS, at_call=10), epochs=4, lr=0.02, device="cpu", scheduler="cosine",
                  checkpoint_path=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2
    torch.manual_seed(999)  # a different global RNG state: resume must restore it
    model, loader = make(seed=123)  # fresh weights and loader generator, all overwritten by the checkpoint
    resumed = train.fit(model, loader, LOSS, epochs=4, lr=0.02, device="cpu", scheduler="cosine",
                        checkpoint_path=ckpt, resume=True, progress=False)
    pd.testing.assert_frame_equal(no_time(resumed), no_time(full))
    for key, value in model.state_dict().items():
        assert torch.equal(value, full_weights[key]), key


def test_early_stopping_restores_best():
    model, loader = make()
    scores = iter([0.5, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    snapshots = []

    def val_fn(m, vl, d):
        snapshots.append(m.head.weight.detach().clone())
        return {"score": next(scores)}

    hist = train.fit(model, loader, LOSS, epochs=7, val_loader=loader, val_fn=val_fn, device="cpu", progress=False,
                     early_stopping=dict(monitor="val_score", patience=2, mode="min"))
    # best at epoch 2; epochs 3 and 4 do not improve -> patience 2 runs out after epoch 5
    assert hist.epoch.tolist() == [1, 2, 3, 4, 5]
    assert hist.attrs["stop_reason"] == "early_stopping" and hist.attrs["best_epoch"] == 2
    assert torch.equal(model.head.weight, snapshots[1])


def test_time_budget_stops_after_the_epoch():
    model, loader = make()
    hist = train.fit(model, loader, LOSS, epochs=50, device="cpu", time_budget_s=0.0, progress=False)
    assert len(hist) == 1 and hist.attrs["stop_reason"] == "time_budget"


def test_nan_loss_raises_with_epoch_step_and_parts():
    model, loader = make()

    def bad(outputs, batch):
        return outputs["mask_logits"].sum() * float("nan"), {"seg": float("nan"), "count": 1.0}

    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1.*seg=nan.*count=1"):
        train.fit(model, loader, bad, epochs=1, device="cpu", progress=False)


def test_progress_lines_when_not_a_tty(capsys, monkeypatch):
    monkeypatch.setenv("CELLNB_PROGRESS", "0")
    model, loader = make()
    train.fit(model, loader, LOSS, epochs=2, device="cpu", progress=True)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch")]
    assert len(lines) == 2 and "train_loss=" in lines[0]


def test_predict_tensor_and_loader():
    model, loader = make()
    x = torch.rand(5, 1, 8, 8)
    out = train.predict(model, x, device="cpu", batch_size=2)
    assert out["mask_logits"].shape == (5, 1, 8, 8) and out["count"].shape == (5,)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out["mask_logits"], model(x)["mask_logits"], atol=1e-6)
    out2 = train.predict(model, DataLoader(Blobs(6), batch_size=4), device="cpu")
    assert out2["mask_logits"].shape == (6, 1, 8, 8)
    assert train.predict(nn.Conv2d(1, 2, 1), x, device="cpu").shape == (5, 2, 8, 8)


# --------------------------------------------------------------------------- GAN
class Gen(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x):
        return {"sr_image": torch.sigmoid(self.net(x))}


class CondDisc(nn.Module):
    """Judges (image, candidate, count): a conditional D in the ELMGAN style."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1))
        self.count_fc = nn.Linear(1, 1)

    def forward(self, image, candidate, count):
        patch = self.conv(torch.cat([image, candidate], 1)).mean(dim=(1, 2, 3))
        return patch + self.count_fc(count[:, None] / 64).squeeze(1)


def test_fit_gan_stable_on_tiny_problem():
    seed_everything(0)
    gen, disc = Gen(), CondDisc()
    loader = DataLoader(Blobs(16), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    bce = nn.BCEWithLogitsLoss()

    def d_loss_fn(d_real, d_fake):
        real, fake = bce(d_real, torch.ones_like(d_real)), bce(d_fake, torch.zeros_like(d_fake))
        return 0.5 * (real + fake), {"real": real, "fake": fake}

    def g_loss_fn(outputs, batch, d_fake):
        adv = bce(d_fake, torch.ones_like(d_fake))
        l1 = (outputs["sr_image"] - batch["mask"]).abs().mean()
        return adv + 10 * l1, {"adv": adv, "l1": l1}

    hist = train.fit_gan(
        gen, disc, loader, g_loss_fn, d_loss_fn, epochs=4, lr_g=2e-3, lr_d=2e-3, d_steps=1, device="cpu",
        real_inputs=lambda b: (b["image"], b["mask"], b["count"]),
        fake_inputs=lambda b, o: (b["image"], o["sr_image"], o["sr_image"].sum(dim=(1, 2, 3))),
        progress=False,
    )
    assert list(hist.columns) == ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_adv", "g_l1", "lr_g", "lr_d", "seconds"]
    assert hist.drop(columns="seconds").map(math.isfinite).all().all()
    # D loss of BCE: log 2 = 0.69 at chance; a sane D stays well between "perfect" and "collapsed"
    assert ((hist.d_loss > 0.05) & (hist.d_loss < 2.0)).all()
    assert hist.g_l1.iloc[-1] < hist.g_l1.iloc[0]


def test_fit_gan_nan_guard():
    gen, disc = Gen(), CondDisc()
    loader = DataLoader(Blobs(4), batch_size=4)
    with pytest.raises(FloatingPointError, match="discriminator loss.*epoch 1, step 1"):
        train.fit_gan(gen, disc, loader, lambda o, b, d: d.mean(), lambda r, f: r.mean() * float("inf"),
                      epochs=1, lr_g=1e-3, lr_d=1e-3, device="cpu", progress=False,
                      real_inputs=lambda b: (b["image"], b["mask"], b["count"]),
                      fake_inputs=lambda b, o: (b["image"], o["sr_image"], b["count"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_amp_on_cuda_and_resume(tmp_path):
    model, loader = make()
    hist = train.fit(model, loader, LOSS, epochs=2, device="cuda", amp=True, progress=False,
                     checkpoint_path=tmp_path / "c.pt")
    assert np.isfinite(hist.train_loss).all() and next(model.parameters()).is_cuda
    model, loader = make()
    resumed = train.fit(model, loader, LOSS, epochs=3, device="cuda", amp=True, progress=False,
                        checkpoint_path=tmp_path / "c.pt", resume=True)
    assert resumed.epoch.tolist() == [1, 2, 3]


def test_progress_bar_path_runs(monkeypatch, capsys):
    monkeypatch.setattr(train, "_progress_mode", lambda progress: "bar")
    model, loader = make()
    hist = train.fit(model, loader, LOSS, epochs=1, device="cpu")
    assert len(hist) == 1 and "loss=" in capsys.readouterr().err


class _BNOnly(torch.nn.Module):
    """A frozen-weight BatchNorm 'model' whose running mean is easy to compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(1, momentum=0.1)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return {"mask_logits": self.scale * self.bn(x)}


def _bn_loader():
    images = [torch.full((1, 2, 2), v) for v in (1.0, 3.0, 5.0, 7.0)]  # mean 4, batch means 2 and 6
    return torch.utils.data.DataLoader([{"image": im} for im in images], batch_size=2, shuffle=False)


def _loss(outputs, batch):
    value = outputs["mask_logits"].mean()
    return value, {"loss": value.item()}


def test_fit_reestimates_batchnorm_statistics_with_final_weights():
    from cellnb.train import fit

    model = _BNOnly()
    history = fit(model, _bn_loader(), _loss, epochs=1, lr=0.0, device="cpu", progress=False)
    # cumulative average over the two batches: (2 + 6) / 2 = 4, not the momentum-0.1 average
    assert history.attrs["bn_recalibrated"] is True
    assert model.bn.running_mean.item() == pytest.approx(4.0)
    assert model.bn.momentum == 0.1 and model.training  # restored

    stale = _BNOnly()
    history = fit(stale, _bn_loader(), _loss, epochs=1, lr=0.0, device="cpu", progress=False, update_bn=False)
    assert history.attrs["bn_recalibrated"] is False
    assert stale.bn.running_mean.item() == pytest.approx(0.1 * 6 + 0.9 * 0.1 * 2)  # 0.78: momentum updates


def test_recalibrate_batchnorm_without_batchnorm_does_nothing():
    from cellnb.train import recalibrate_batchnorm

    assert recalibrate_batchnorm(torch.nn.Linear(2, 2), [torch.zeros(1, 2)]) is False


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_fit_trains_in_the_requested_precision_where_native(precision, monkeypatch):
    """``precision="bfloat16"`` autocasts the forward pass only where bfloat16 is native; the weights
    stay float32 and ``attrs["precision"]`` records what ran (float32 on an emulating CPU)."""
    from cellnb import utils

    curves = {}
    for native in (False, True):
        monkeypatch.setattr(utils, "native_bfloat16", lambda device, native=native: native)
        model, loader = make()
        h = train.fit(model, loader, LOSS, epochs=2, lr=1e-2, device="cpu", progress=False, precision=precision)
        assert h.attrs["precision"] == (precision if native else "float32")
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert np.isfinite(h["train_loss"]).all()
        curves[native] = h["train_loss"].tolist()
    # emulated: identical to float32; native bfloat16 rounds the convolutions, so the losses move
    assert (curves[False] == curves[True]) == (precision == "float32")


def test_fit_rejects_an_unknown_precision():
    model, loader = make()
    with pytest.raises(ValueError, match="precision"):
        train.fit(model, loader, LOSS, epochs=1, device="cpu", progress=False, precision="float16")


def test_fit_half_budget_branch_mid_epoch_leaves_the_run_unchanged_and_survives_a_resume(tmp_path):
    """24 steps (6 epochs x 4 shuffled batches, dropout, one-cycle): the branch leaves after step 10
    (inside epoch 3), anneals 2 steps and validates; the curve and the weights are those of a run
    without it, and a run resumed after the branch keeps its record."""
    val = DataLoader(Blobs(8, seed=1), batch_size=4)
    kw = dict(epochs=6, lr=0.02, val_loader=val, device="cpu", scheduler="onecycle", progress=False)
    runs = {}
    for half in (False, True):
        model, loader = make(seed=7)
        runs[half] = (train.fit(model, loader, LOSS, half_budget=half, **kw), model.state_dict())
    (plain, w_plain), (branched, w_branched) = runs[False], runs[True]
    pd.testing.assert_frame_equal(no_time(plain), no_time(branched))
    assert all(torch.equal(w_plain[k], w_branched[k]) for k in w_plain)
    half = branched.attrs["half_budget"]
    assert (half["steps"], half["branch_from"]) == (12, 10) and math.isfinite(half["val_loss"])
    assert "half_budget" not in plain.attrs

    # 6 loss calls an epoch (4 steps, 2 validation batches), 4 more in the branch of epoch 3:
    # call 23 is epoch 4's first step
    ckpt = tmp_path / "run.pt"
    model, loader = make(seed=7)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, loader, crashing(LOSS, at_call=23), half_budget=True, checkpoint_path=ckpt, **kw)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 3
    model, loader = make(seed=7)
    resumed = train.fit(model, loader, LOSS, half_budget=True, checkpoint_path=ckpt, resume=True, **kw)
    assert resumed.attrs["half_budget"]["val_loss"] == half["val_loss"]
    pd.testing.assert_frame_equal(no_time(resumed), no_time(branched))


def test_half_budget_needs_a_validation():
    model, loader = make()
    with pytest.raises(ValueError, match="val_loader"):
        train.fit(model, loader, LOSS, epochs=6, device="cpu", progress=False, half_budget=True)
    with pytest.raises(TypeError, match="callable"):
        train.fit_gan(Gen(), CondDisc(), loader, None, None, epochs=6, lr_g=1e-3, lr_d=1e-3, device="cpu",
                      progress=False, half_budget=True)


def test_a_training_in_stages_gains_what_its_stage_that_gained_most_did():
    """``half_budget_gain`` of a staged history (MobileSR → TinyU-Net): the largest stage gain, NaN
    unless every stage measured it; ``half_budget_seconds`` adds the stages' branches."""
    from cellnb.methods.training import half_budget_gain, half_budget_seconds

    def stage(curve, half, seconds):
        h = pd.DataFrame({"val_loss": curve})
        if half is not None:
            h.attrs["half_budget"] = {"val_loss": half, "seconds": seconds}
        return h

    sr, seg = stage([4.0, 2.0, 0.9], 1.0, 1.5), stage([0.6, 0.49], 0.5, 2.0)  # gains 10 % and 2 %
    whole = pd.concat([sr.assign(stage="sr"), seg.assign(stage="seg")], ignore_index=True)
    whole.attrs.update(sr_history=sr, seg_history=seg)
    assert half_budget_gain(whole) == pytest.approx(0.10)
    assert half_budget_gain(seg) == pytest.approx(0.02)
    assert half_budget_seconds(whole) == pytest.approx(3.5)
    whole.attrs["seg_history"] = stage([0.6, 0.49], None, 0.0)  # one stage did not measure it
    assert math.isnan(half_budget_gain(whole))
    # a staged history without its stages' histories is read as one curve
    bare = pd.concat([sr.assign(stage="sr"), seg.assign(stage="seg")], ignore_index=True)
    bare.attrs["half_budget"] = {"val_loss": 0.5}
    assert half_budget_gain(bare) == pytest.approx(0.02)
