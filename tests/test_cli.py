"""Your own images end to end: train (smoke), predict and export from folders written to disk, and the
errors a user will hit, each naming the file and what was expected."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellnb import cli, data, userdata
from cellnb.methods import get_method


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    for sub in ("count_images", "points", "nuclei_images", "labels"):
        (root / sub).mkdir()
    from skimage import io

    truth = {}
    for i in range(20):
        s = data.fluorescence_cells(i, size=(96, 112), n_cells=12 + i)
        tifffile.imwrite(root / "count_images" / f"field{i:02d}.tif", (s["image"] * 65535).astype(np.uint16))
        userdata.write_points_csv(root / "points" / f"field{i:02d}.csv", s["points"])
        truth[f"field{i:02d}.tif"] = len(s["points"])
        n = data.nuclei(100 + i, size=80)
        io.imsave(root / "nuclei_images" / f"n{i:02d}.png", (n["image"] * 255).astype(np.uint8), check_contrast=False)
        tifffile.imwrite(root / "labels" / f"n{i:02d}_labels.tif", n["labels"].astype(np.uint16))
    return root, truth


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "CELLNB_PROGRESS": "0"})


def test_count_model_train_predict_export(folders, tmp_path):
    root, truth = folders
    model = tmp_path / "count_model"
    r = run("cellnb.train", "--method", "unet", "--task", "count", "--images", str(root / "count_images"),
            "--points", str(root / "points"), "--out", str(model), "--profile", "smoke", "--seed", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((model / "model_card.json").read_text())
    assert card["method"] == "unet" and card["task"] == "count" and card["data"]["n_images"] == 20
    assert card["data"]["n_train"] == 16 and card["data"]["n_val"] == 4
    assert card["data"]["count_min"] == 12 and card["data"]["count_max"] == 31
    v = card["validation"]
    assert v["metric"] == "count_mae" and v["floor_name"].startswith("constant") and isinstance(v["beats_floor"], bool)
    assert (model / "training_curve.png").stat().st_size > 1000 and (model / "model.pt").is_file()
    # the kept weights are those of the lowest validation loss, and the card says which step
    history = __import__("pandas").read_csv(model / "history.csv")
    assert card["training"]["best_step"] == int(history.loc[history["val_loss"].idxmin(), "step"])
    from cellnb.utils import training_precision

    assert card["training"]["precision"] == training_precision("bfloat16", "cpu")  # the U-Net's declared precision
    assert card["training"]["half_budget_gain"] is None  # 12 smoke steps are too few for a half-budget branch
    # the floor is what it says: mean training count against the validation counts
    val_counts = [truth[n] for n in card["data"]["val_images"]]
    train_mean = np.mean([c for n, c in truth.items() if n not in card["data"]["val_images"]])
    assert v["floor"] == pytest.approx(np.mean(np.abs(train_mean - np.array(val_counts))), rel=1e-6)

    out = tmp_path / "pred"
    r = run("cellnb.predict", "--model", str(model), "--images", str(root / "count_images"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "counts.csv")))
    assert [row["image"] for row in rows] == sorted(truth)
    assert all(float(row["count"]) >= 0 and row["height"] == "96" and row["width"] == "112" for row in rows)
    assert len(list(out.glob("*_overlay.png"))) == 20
    # refuses to overwrite
    r = run("cellnb.predict", "--model", str(model), "--images", str(root / "count_images"), "--out", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr

    package, status = cli.export_package(model, tmp_path / "count.zip")
    assert status == "passed" and package.stat().st_size > 10_000
    import zipfile

    names = zipfile.ZipFile(package).namelist()
    assert "rdf.yaml" in names and any(n.endswith(".pt") for n in names) and any(n.endswith(".npy") for n in names)


def test_training_reports_what_the_second_half_of_its_steps_bought(folders, tmp_path):
    root, _ = folders
    common = ["--method", "unet", "--task", "count", "--images", str(root / "count_images"), "--points",
              str(root / "points"), "--profile", "smoke", "--steps", "24"]
    r = run("cellnb.train", *common, "--out", str(tmp_path / "checked"))
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((tmp_path / "checked" / "model_card.json").read_text())["training"]
    history = __import__("pandas").read_csv(tmp_path / "checked" / "history.csv")
    half = card["half_budget_gain"]
    assert np.isfinite(half) and card["converged_over_budget"] == (half < 0.05)
    assert "the second half of the steps lowered the validation loss by" in r.stdout
    # the branch leaves the run as it was: the same curve without it, and the card says nothing was measured
    r = run("cellnb.train", *common, "--out", str(tmp_path / "plain"), "--no-half-budget-check")
    assert r.returncode == 0, r.stderr[-3000:]
    plain = json.loads((tmp_path / "plain" / "model_card.json").read_text())["training"]
    assert plain["half_budget_gain"] is None and plain["converged_over_budget"] is None
    assert "second half" not in r.stdout
    assert __import__("pandas").read_csv(tmp_path / "plain" / "history.csv")["val_loss"].tolist() == history["val_loss"].tolist()


def test_a_tile_protocol_count_model_predicts_in_tiles_of_its_training_crop(folders, tmp_path):
    """SSRNet's count head counts a training crop whatever its input size: the CLI's --tile (512 by
    default, for large images) does not apply; it predicts in tiles of the crop on the card."""
    root, truth = folders
    model_dir = tmp_path / "ssrnet_count"
    r = run("cellnb.train", "--method", "ssrnet", "--task", "count", "--images", str(root / "count_images"),
            "--points", str(root / "points"), "--out", str(model_dir), "--profile", "smoke")
    # its distribution map is learned from masks: points alone are refused, naming what is missing
    assert r.returncode == 2 and "cannot learn task 'count'" in r.stderr and "'mask' or 'labels'" in r.stderr
    assert not model_dir.exists()
    r = run("cellnb.train", "--method", "ssrnet", "--task", "count", "--images", str(root / "nuclei_images"),
            "--labels", str(root / "labels"), "--out", str(model_dir), "--profile", "smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["settings"]["crop"] == get_method("ssrnet").multiple  # the smoke crop, raised to the network's multiple
    out = tmp_path / "pred"
    r = run("cellnb.predict", "--model", str(model_dir), "--images", str(root / "count_images"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = {row["image"]: float(row["count"]) for row in csv.DictReader(open(out / "counts.csv"))}
    method, model, _ = cli.load_model(model_dir)
    image = userdata.read_image(root / "count_images" / "field03.tif")
    expected = method.predict(model, image, "count", tile=card["settings"]["crop"]).count
    assert counts["field03.tif"] == pytest.approx(expected, abs=0.006)  # counts.csv rounds to 0.01
    from cellnb.methods.ssrnet import tile_count

    with_cli_tile = tile_count(model, method.normalize(image)[0], 512)  # what --tile 512 would have counted
    assert abs(counts["field03.tif"] - with_cli_tile) > 0.5
    # load_model restores the card's crop (not the method's default tile), and refuses a card without one
    import shutil

    from cellnb.methods.base import TRAINING_CROP_ATTR

    for crop in (128, 0, None):
        edited = tmp_path / f"edited_{crop}"
        shutil.copytree(model_dir, edited)
        changed = json.loads((edited / "model_card.json").read_text())
        if crop is None:
            del changed["settings"]["crop"]
        else:
            changed["settings"]["crop"] = crop
        (edited / "model_card.json").write_text(json.dumps(changed))
        if crop == 128:
            assert getattr(cli.load_model(edited)[1], TRAINING_CROP_ATTR) == 128
        else:
            with pytest.raises(cli.CliError, match="settings.crop is"):
                cli.load_model(edited)


def train_on_nuclei(root: Path, model: Path, task: str) -> dict:
    """Train a smoke U-Net for ``task`` on the nuclei folders with ``cellnb.train``; its model card."""
    r = run("cellnb.train", "--method", "unet", "--task", task, "--images", str(root / "nuclei_images"),
            "--labels", str(root / "labels"), "--out", str(model), "--profile", "smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((model / "model_card.json").read_text())


def test_instance_model_train_predict_export(folders, tmp_path):
    root, _ = folders
    model = tmp_path / "inst_model"
    card = train_on_nuclei(root, model, "instances")
    assert card["validation"]["metric"] == "ap50" and 0 <= card["validation"]["floor"] <= 1
    # the instance step's seed threshold, chosen on the validation images, travels with the model
    assert card["postprocess"] in get_method("unet").postprocess_options("instances")
    out = tmp_path / "pred"
    r = run("cellnb.predict", "--model", str(model), "--images", str(root / "nuclei_images" / "*.png"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    tiffs = sorted(out.glob("*_labels.tif"))
    assert len(tiffs) == 20
    labels = tifffile.imread(tiffs[0])
    assert labels.shape == (80, 80) and np.issubdtype(labels.dtype, np.integer)
    rows = list(csv.DictReader(open(out / "counts.csv")))
    assert float(rows[0]["count"]) == len(np.unique(labels[labels > 0]))
    assert cli.export_package(model, tmp_path / "inst.zip")[1] == "passed"


def test_mask_model_keeps_its_chosen_threshold_and_predicts_with_it(folders, tmp_path):
    from cellnb.postprocess import MASK_THRESHOLDS

    root, _ = folders
    model = tmp_path / "mask_model"
    card = train_on_nuclei(root, model, "mask")
    # the foreground threshold was chosen on the validation images and travels with the model
    threshold = card["postprocess"]["threshold"]
    assert threshold in MASK_THRESHOLDS and card["validation"]["metric"] == "dice"
    out = tmp_path / "pred"
    r = run("cellnb.predict", "--model", str(model), "--images", str(root / "nuclei_images" / "n0*.png"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    # the written mask is the foreground above the card's threshold
    method, net, card = cli.load_model(model)
    image = userdata.read_image(root / "nuclei_images" / "n00.png", card.get("channel"))
    foreground = method.predict(net, image, "mask").foreground
    assert np.array_equal(tifffile.imread(out / "n00_mask.tif") > 0, foreground > threshold)


def test_predict_reports_unreadable_images_and_exits_non_zero(folders, tmp_path):
    root, _ = folders
    model = tmp_path / "m"
    assert run("cellnb.train", "--method", "unet", "--task", "count", "--images", str(root / "count_images"),
               "--points", str(root / "points"), "--out", str(model), "--profile", "smoke",
               "--steps", "2").returncode == 0
    images = tmp_path / "mixed"
    images.mkdir()
    tifffile.imwrite(images / "good.tif", np.zeros((50, 70), np.uint8))
    (images / "broken.png").write_bytes(b"not a png")
    r = run("cellnb.predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "broken.png" in r.stderr
    rows = list(csv.DictReader(open(tmp_path / "o" / "counts.csv")))
    assert [row["image"] for row in rows] == ["good.tif"]


# --------------------------------------------------------------------------- errors a user will hit


def test_images_and_annotations_that_do_not_pair(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "pts").mkdir()
    tifffile.imwrite(tmp_path / "img" / "a.tif", np.zeros((10, 10), np.uint8))
    tifffile.imwrite(tmp_path / "img" / "b.tif", np.zeros((10, 10), np.uint8))
    userdata.write_points_csv(tmp_path / "pts" / "a.csv", np.array([[1.0, 2.0]]))
    userdata.write_points_csv(tmp_path / "pts" / "c.csv", np.array([[1.0, 2.0]]))
    with pytest.raises(userdata.UserDataError, match=r"1 image\(s\) have no annotation .*b.tif"):
        userdata.load_samples(tmp_path / "img", points=tmp_path / "pts")
    (tmp_path / "img" / "b.tif").unlink()
    with pytest.raises(userdata.UserDataError, match=r"match no image: c.csv"):
        userdata.load_samples(tmp_path / "img", points=tmp_path / "pts")


def test_empty_folder(tmp_path):
    with pytest.raises(userdata.UserDataError, match="no images"):
        userdata.list_images(tmp_path)
    r = run("cellnb.train", "--method", "unet", "--task", "count", "--images", str(tmp_path),
            "--points", str(tmp_path), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "no images" in r.stderr and not (tmp_path / "m").exists()


def test_csv_columns_and_points_outside(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(userdata.UserDataError, match=r"bad.csv: expected a header .*'y,x' or 'x,y'"):
        userdata.read_points_csv(bad)
    xy = tmp_path / "xy.csv"
    xy.write_text("X,Y\n3,1\n4.5,2\n")
    assert userdata.read_points_csv(xy).tolist() == [[1.0, 3.0], [2.0, 4.5]]  # (row, col)
    with pytest.raises(userdata.UserDataError, match=r"xy.csv: point \(y=1, x=3\) lies outside its 2x3 image"):
        userdata.read_points_csv(xy, shape=(2, 3))


def test_label_image_of_another_size(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "img" / "a.tif", np.zeros((10, 12), np.uint8))
    tifffile.imwrite(tmp_path / "lab" / "a_labels.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(userdata.UserDataError, match=r"a_labels.tif: label image is 10x10, its image a.tif is 10x12"):
        userdata.load_samples(tmp_path / "img", labels=tmp_path / "lab")


def test_unknown_method_or_task_and_model_without_card(tmp_path):
    r = run("cellnb.train", "--method", "stardist", "--task", "count", "--images", str(tmp_path),
            "--points", str(tmp_path), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "unknown method 'stardist'" in r.stderr and "unet" in r.stderr
    r = run("cellnb.train", "--method", "classical", "--task", "count", "--images", str(tmp_path),
            "--points", str(tmp_path), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "nothing to train" in r.stderr
    r = run("cellnb.predict", "--model", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no model_card.json" in r.stderr


def test_channel_and_dot_colour(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 2] = 200
    path = tmp_path / "rgb.png"
    from skimage import io

    io.imsave(path, rgb, check_contrast=False)
    assert userdata.read_image(path, channel=2).max() == pytest.approx(200 / 255)
    with pytest.raises(userdata.UserDataError, match="channel 3 asked for, but the image has 3 channel"):
        userdata.read_image(path, channel=3)
    dots = np.zeros((6, 7, 3), np.uint8)
    dots[1, 2] = (255, 0, 0)
    dots[4, 5] = (0, 255, 0)
    io.imsave(tmp_path / "dots.png", dots, check_contrast=False)
    assert userdata.points_from_dot_image(tmp_path / "dots.png").tolist() == [[1, 2], [4, 5]]
    assert userdata.points_from_dot_image(tmp_path / "dots.png", colour=(255, 0, 0)).tolist() == [[1, 2]]


def test_exported_readme_says_how_a_count_is_made():
    """A tile-protocol method's package exports a per-pixel map, not a density: its README says so."""
    card = {"method": "ssrnet", "settings": {"crop": 128}}
    rule = cli._count_rule(get_method("ssrnet"), card, "count")
    assert "not a density" in rule and "128² training crop" in rule
    assert cli._count_rule(get_method("unet"), {"method": "unet", "settings": {"crop": 96}}, "count") == \
        " (the count is the sum of the density)."
    assert cli._count_rule(get_method("ssrnet"), card, "mask") == "."
