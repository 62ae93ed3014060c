import pytest
import torch

from cellnb import utils


def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv(utils.DATA_ROOT_ENV, raising=False)
    assert utils.resolve_data_root(None) is None and utils.resolve_data_root("") is None
    assert utils.resolve_data_root(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv(utils.DATA_ROOT_ENV, str(tmp_path))
    assert utils.resolve_data_root(None) == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="does not exist; expected a folder holding e.g. vgg_cells/"):
        utils.resolve_data_root(tmp_path / "missing")


def test_real_dataset_dir_skips_cleanly(tmp_path, monkeypatch):
    monkeypatch.delenv(utils.DATA_ROOT_ENV, raising=False)
    (tmp_path / "vgg_cells").mkdir()
    assert utils.real_dataset_dir(tmp_path, "vgg_cells") == tmp_path.resolve() / "vgg_cells"
    assert utils.real_dataset_dir(tmp_path, "mbm") is None
    assert utils.real_dataset_dir(None, "vgg_cells") is None


def test_select_device_errors():
    assert utils.select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        utils.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
            utils.select_device("cuda")
        assert utils.device_name("cpu") == "cpu"


def test_set_cpu_threads_and_restore():
    before = torch.get_num_threads()
    try:
        assert utils.set_cpu_threads(1, "cpu") == 1
        assert utils.set_cpu_threads(0, "cpu") == 1  # 0 keeps what is in force
    finally:
        torch.set_num_threads(before)


def test_seed_everything_repeats():
    utils.seed_everything(5)
    a = torch.rand(3)
    utils.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


def test_versions_and_commit():
    v = utils.versions()
    assert set(v) >= {"python", "torch", "torchvision", "numpy", "cpu_threads"}
    assert utils.git_commit() != ""
