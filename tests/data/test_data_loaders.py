"""Loaders on tiny files written to tmp_path, splits, DictDataset, PairedAugment."""

import numpy as np
import pytest
import tifffile
import torch
from skimage import io

from cellnb import data


def test_load_vgg_and_mbm_dots(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 100
    dots = np.zeros((8, 8, 3), np.uint8)
    dots[2, 3, 0] = 255
    dots[5, 6, 0] = 255
    io.imsave(tmp_path / "001cell.png", img, check_contrast=False)
    io.imsave(tmp_path / "001dots.png", dots, check_contrast=False)
    items = data.load_dot_dataset(tmp_path, kind="vgg")
    assert len(items) == 1 and items[0]["count"] == 2 and items[0]["name"] == "001cell.png"
    np.testing.assert_array_equal(items[0]["points"], [[2, 3], [5, 6]])
    mbm = tmp_path / "mbm"
    mbm.mkdir()
    io.imsave(mbm / "BM_GRAZ_HE_0001_01_000.png", img, check_contrast=False)
    io.imsave(mbm / "BM_GRAZ_HE_0001_01_dots_000.png", (dots[..., 0] > 0).astype(np.uint8) * 255, check_contrast=False)
    m = data.load_dot_dataset(mbm, kind="mbm")
    assert m[0]["count"] == 2 and m[0]["rgb"].shape == (8, 8, 3)
    (mbm / "BM_GRAZ_HE_0001_01_dots_000.png").unlink()
    with pytest.raises(ValueError, match="no dot annotation"):
        data.load_dot_dataset(mbm, kind="mbm")
    with pytest.raises(FileNotFoundError, match="NNNcell.png"):
        data.load_dot_dataset(tmp_path / "missing", kind="vgg")
    with pytest.raises(ValueError, match="unknown dot dataset"):
        data.load_dot_dataset(tmp_path, kind="adi")


def test_parse_bbbc005_name_both_modes():
    name = "SIMCEP_images_A05_C18_F1_s03_w1.TIF"
    assert data.parse_bbbc005_name(name) == 18
    assert data.parse_bbbc005_name("/x/BBBC005_v1_ground_truth/" + name, mode="released") == 5  # plate column
    assert data.parse_bbbc005_name("SIMCEP_images_P24_C100_F48_s25_w2.TIF", mode="released") == 24
    with pytest.raises(ValueError, match="not a BBBC005 file name"):
        data.parse_bbbc005_name("cells_001.png")
    with pytest.raises(ValueError, match="unknown mode"):
        data.parse_bbbc005_name(name, mode="column")


def test_image_mask_pairs_dsb_and_label_tiffs(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    img = np.full((6, 5, 3), 50, np.uint8)
    mask = np.zeros((6, 5), np.uint8)
    mask[1:3, 1:4] = 255
    io.imsave(tmp_path / "img" / "a.png", img, check_contrast=False)
    io.imsave(tmp_path / "mask" / "a.png", mask, check_contrast=False)
    pairs = data.load_image_mask_pairs(tmp_path)
    assert pairs[0]["mask"].sum() == 6 and pairs[0]["mask"].max() == 1
    io.imsave(tmp_path / "img" / "b.png", img, check_contrast=False)
    with pytest.raises(ValueError, match="has no mask"):
        data.load_image_mask_pairs(tmp_path)
    # DSB2018: one PNG per nucleus -> labels 1..K in sorted file order
    root = tmp_path / "dsb" / "abc"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    io.imsave(root / "images" / "abc.png", np.dstack([img, np.full((6, 5), 255, np.uint8)]), check_contrast=False)
    m1, m2 = np.zeros((6, 5), np.uint8), np.zeros((6, 5), np.uint8)
    m1[0:2, 0:2] = 255
    m2[4:6, 3:5] = 255
    io.imsave(root / "masks" / "m1.png", m1, check_contrast=False)
    io.imsave(root / "masks" / "m2.png", m2, check_contrast=False)
    dsb = data.load_dsb2018(tmp_path / "dsb")
    assert dsb[0]["image"].shape == (6, 5, 3) and dsb[0]["name"] == "abc"
    assert dsb[0]["labels"][0, 0] == 1 and dsb[0]["labels"][5, 4] == 2 and (dsb[0]["labels"] > 0).sum() == 8
    with pytest.raises(FileNotFoundError, match="images"):
        data.load_dsb2018(tmp_path / "img")
    # label TIFFs
    lt = tmp_path / "lt"
    (lt / "images").mkdir(parents=True)
    (lt / "labels").mkdir()
    tifffile.imwrite(lt / "images" / "x.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(lt / "labels" / "x.tif", np.eye(4, dtype=np.uint16) * 3)
    got = data.load_label_tiffs(lt)
    assert got[0]["labels"].dtype == np.int32 and got[0]["labels"][2, 2] == 3


def test_splits():
    s = data.vgg_splits(32, n_splits=5, seed=0)
    assert len(s) == 5
    for sp in s:
        assert len(sp["train"]) == 32 and len(set(sp["train"])) == 32 and sp["train"].max() < 100
        np.testing.assert_array_equal(sp["test"], np.arange(100, 200))
    assert not np.array_equal(s[0]["train"], s[1]["train"])
    np.testing.assert_array_equal(data.vgg_splits(32, seed=0)[2]["train"], s[2]["train"])
    with pytest.raises(ValueError, match="n_train"):
        data.vgg_splits(101)
    m = data.mbm_split(1)
    assert len(m["train"]) == 15 and len(m["test"]) == 29
    assert sorted(np.concatenate([m["train"], m["test"]])) == list(range(44))


def test_dict_dataset_conversion():
    item = {
        "image": np.full((4, 5, 3), 255, np.uint8),
        "mask": np.ones((4, 5), np.uint8),
        "density": np.zeros((4, 5), np.float64),
        "count": 3,
        "name": "a",
    }
    ds = data.DictDataset([item])
    out = ds[0]
    assert out["image"].shape == (3, 4, 5) and out["image"].dtype == torch.float32 and out["image"].max() == 1.0
    assert out["mask"].dtype == torch.int64 and out["mask"].shape == (4, 5)
    assert out["density"].shape == (1, 4, 5) and out["density"].dtype == torch.float32
    assert out["count"].item() == 3.0 and out["name"] == "a"
    assert set(data.DictDataset([item], keys=["image", "count"])[0]) == {"image", "count"}
    with pytest.raises(KeyError, match="points"):
        data.DictDataset([item], keys=["points"])


def test_paired_augment_keeps_alignment_and_count():
    from cellnb.targets import density_from_points

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    h, w = 32, 32
    image = rng.random((h, w)).astype(np.float32)
    pts = rng.integers(0, 32, (20, 2)).astype(np.float32)
    dots = np.zeros((h, w), np.int64)
    np.add.at(dots, (pts[:, 0].astype(int), pts[:, 1].astype(int)), 1)
    item = {
        "image": image,
        "mask": (image > 0.5).astype(np.uint8),  # the mask is a function of the image: must stay aligned
        "dots": dots,
        "density": density_from_points(pts, (h, w), sigma=0),
        "count": 20,
        "points": pts,
    }
    aug = data.PairedAugment(crop=16, flip=True, rotate90=True)
    ds = data.DictDataset([item], transform=aug)
    seen_rot = set()
    for _ in range(20):
        out = ds[0]
        assert out["image"].shape == (1, 16, 16) and out["mask"].shape == (16, 16)
        assert torch.equal(out["mask"], (out["image"][0] > 0.5).long())
        assert torch.equal(out["density"][0], out["dots"].float())  # no interpolation of densities
        assert out["count"].item() == out["dots"].sum().item()
        assert "points" not in out
        seen_rot.add(round(out["image"].sum().item(), 4))
    assert len(seen_rot) > 5  # really random
    noisy = data.PairedAugment(flip=False, rotate90=False, noise_std=0.1)(data.DictDataset([item])[0])
    assert not torch.equal(noisy["image"][0], torch.from_numpy(image))
    assert torch.equal(noisy["mask"], torch.from_numpy((image > 0.5).astype(np.int64)))  # noise on the image only
    with pytest.raises(ValueError, match="larger than the image"):
        data.PairedAugment(crop=64)(data.DictDataset([item])[0])
