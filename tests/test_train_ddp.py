"""fit and fit_gan under ``torchrun --nproc_per_node 2`` (gloo on CPU): DistributedDataParallel, a
DistributedSampler, loss averaged over ranks, only rank 0 writes the checkpoint. The training script
below is plain single-process code: nothing in it knows about torch.distributed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from cellnb import train
    from cellnb.losses.functional import bce_dice_loss, multitask
    from cellnb.utils import distributed_info, seed_everything

    class Blobs(Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.images = torch.rand(n, 1, 8, 8, generator=g)
            self.masks = (self.images > 0.5).float()
        def __len__(self):
            return len(self.images)
        def __getitem__(self, i):
            return {"image": self.images[i], "mask": self.masks[i], "target": self.masks[i]}

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1)
        def forward(self, x):
            return {"mask_logits": self.head(torch.relu(self.bn(self.conv(x))))}

    class Disc(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1))
        def forward(self, image, mask):
            return self.net(torch.cat([image, mask], 1))

    out = sys.argv[1]
    seed_everything(0)
    model = Seg()
    loader = DataLoader(Blobs(32, 0), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(Blobs(10, 1), batch_size=4)
    loss = multitask({"seg": ("mask_logits", "mask", bce_dice_loss, 1.0)})
    hist = train.fit(model, loader, loss, epochs=6, lr=0.05, val_loader=val, device="cpu", progress=True,
                     scheduler="onecycle", checkpoint_path=os.path.join(out, "fit.ckpt"),
                     val_fn=lambda m, vl, d: {"n_seen": float(sum(len(b["image"]) for b in vl))})

    bce = nn.BCEWithLogitsLoss()
    def g_loss(outputs, batch, d_fake):
        adv = bce(d_fake, torch.ones_like(d_fake))
        seg = bce(outputs["mask_logits"], batch["mask"])
        return adv + 10 * seg, {"adv": adv, "seg": seg}
    def d_loss(d_real, d_fake):
        return 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
    seed_everything(1)
    gen, disc = Seg(), Disc()
    gan = train.fit_gan(gen, disc, loader, g_loss, d_loss, epochs=4, lr_g=0.02, lr_d=0.002, device="cpu",
                        progress=False, checkpoint_path=os.path.join(out, "gan.ckpt"),
                        fake_inputs=lambda b, o: (b["image"], torch.sigmoid(o["mask_logits"])))

    rank, world = distributed_info()
    checksum = float(sum(p.double().sum() for p in model.parameters()))
    bn = model.bn.running_mean.tolist()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": world, "attrs_world": hist.attrs["world_size"],
                   "train_loss": hist.train_loss.tolist(), "val_loss": hist.val_loss.tolist(),
                   "val_n_seen": hist.val_n_seen.tolist(), "checksum": checksum, "bn": bn,
                   "g_seg": gan.g_seg.tolist(), "gan_world": gan.attrs["world_size"],
                   "gen_checksum": float(sum(p.double().sum() for p in gen.parameters()))}, f)
''')


def test_fit_and_fit_gan_under_torchrun_with_gloo(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", CELLNB_DDP_BACKEND="gloo", CELLNB_PROGRESS="0")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == r0["attrs_world"] == r0["gan_world"] == 2
    # the loss goes down, and both ranks report the same (averaged) history and hold the same weights
    assert r0["train_loss"][-1] < 0.8 * r0["train_loss"][0]
    assert r0["train_loss"] == r1["train_loss"] and r0["val_loss"] == r1["val_loss"]
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-6)
    assert r0["bn"] == pytest.approx(r1["bn"])  # re-estimated BatchNorm statistics averaged over ranks
    assert r0["g_seg"][-1] < r0["g_seg"][0] and r0["g_seg"] == r1["g_seg"]
    assert r0["gen_checksum"] == pytest.approx(r1["gen_checksum"], rel=1e-6)
    # the validation set (10 images) is split across ranks without padding: 5 each, averaged
    assert r0["val_n_seen"] == [5.0] * 6
    # only rank 0 prints the epoch lines
    assert result.stdout.count("epoch 6:") == 1
    # the checkpoint (written by rank 0) loads into a plain single-process model
    ckpt = torch.load(tmp_path / "fit.ckpt", weights_only=False)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    exec(compile(SCRIPT.split("out = sys.argv[1]")[0], "script", "exec"), ns := {})
    fresh = ns["Seg"]()
    fresh.load_state_dict(ckpt["model"])
    assert ckpt["epoch"] == 6 and [row["train_loss"] for row in ckpt["history"]] == r0["train_loss"]
    gan = torch.load(tmp_path / "gan.ckpt", weights_only=False)
    ns["Disc"]().load_state_dict(gan["discriminator"])
    assert gan["epoch"] == 4
