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
    assert set(v) >= {"python", "torch", "torchvision", "numpy", "cpu_threads", "cpu_bfloat16", "cpu"}
    assert utils.git_commit() != ""


def test_git_commit_ignores_run_outputs_but_not_code(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "results" / "quick").mkdir(parents=True)
    (repo / "cellnb").mkdir()
    (repo / "results" / "quick" / "a.json").write_text("{}")
    (repo / "cellnb" / "code.py").write_text("x = 1\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(utils, "REPO_ROOT", repo)
    assert not utils.git_commit().endswith("-dirty")
    (repo / "results" / "quick" / "a.json").write_text('{"new": 1}')
    assert not utils.git_commit().endswith("-dirty")  # a result file written by a run
    (repo / "cellnb" / "code.py").write_text("x = 2\n")
    assert utils.git_commit().endswith("-dirty")  # code changed


def test_training_precision_falls_back_to_float32_without_native_bfloat16(monkeypatch):
    assert utils.training_precision("float32", "cpu") == "float32"
    with pytest.raises(ValueError, match="unknown training precision 'float16'"):
        utils.training_precision("float16", "cpu")
    monkeypatch.setattr(utils, "native_bfloat16", lambda device: False)
    assert utils.training_precision("bfloat16", "cpu") == "float32"
    monkeypatch.setattr(utils, "native_bfloat16", lambda device: True)
    assert utils.training_precision("bfloat16", "cpu") == "bfloat16"


def test_bfloat16_note_names_the_device_only_where_bfloat16_is_emulated(monkeypatch):
    monkeypatch.setattr(utils, "native_bfloat16", lambda device: True)
    assert utils.bfloat16_note("cpu") == ""
    monkeypatch.setattr(utils, "native_bfloat16", lambda device: False)
    assert utils.bfloat16_note("cpu") == f"no native bfloat16 on {utils.device_name('cpu')}"


def test_autocast_runs_convolutions_in_bfloat16_and_float32_outputs_casts_back():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 8, 8)
    with utils.autocast("float32", "cpu"):
        assert conv(x).dtype == torch.float32
    with utils.autocast("bfloat16", "cpu"):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    out = utils.float32_outputs({"density": y, "index": torch.arange(3), "name": "x"})
    assert out["density"].dtype == torch.float32 and out["index"].dtype == torch.int64 and out["name"] == "x"
    assert utils.float32_outputs(y).dtype == torch.float32
    with pytest.raises(ValueError, match="unknown training precision"):
        utils.autocast("half", "cpu")


def test_describe_cpu_names_the_extensions_that_set_the_speed():
    amx = "processor\t: 0\nmodel name\t: Intel Xeon\ncpu family\t: 6\nmodel\t\t: 143\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n"
    assert utils.describe_cpu(amx) == "Intel Xeon (family 6, model 143; avx2 avx512f amx_bf16)"
    # only the first processor's block is read, and a CPU without the listed flags says so by listing none
    two = "model name\t: AMD EPYC\nflags\t\t: sse2 avx2\n\nmodel name\t: other\nflags\t\t: avx512f\n"
    assert utils.describe_cpu(two) == "AMD EPYC (avx2)"
    assert utils.describe_cpu("") != ""  # falls back to the platform's name
