import json
import math

import pytest

from cellnb import results
from cellnb.results import REQUIRED_KEYS, Run, atomic_write_text, load, validate


def make_run(tmp_path):
    run = Run("demo", profile="smoke", device="cpu", seed=3, settings={"epochs": 1})
    run.metric("count_mae", 1.25)
    run.update({"dice": 0.5, "n": 4})
    run.claim("c1", "MACs are 1/20 of U-Net", paper="SSRNet abstract", measured=0.07, holds=False, note="ratio")
    return run


def test_save_writes_every_provenance_field(tmp_path):
    path = make_run(tmp_path).save(tmp_path)
    assert path == tmp_path / "smoke" / "demo.json"
    record = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(record)
    assert record["profile"] == "smoke" and record["device"] == "cpu" and record["seed"] == 3
    assert record["metrics"] == {"count_mae": 1.25, "dice": 0.5, "n": 4}
    assert record["claims"] == [{"id": "c1", "statement": "MACs are 1/20 of U-Net", "paper": "SSRNet abstract",
                                 "measured": 0.07, "holds": False, "note": "ratio", "kind": "paper",
                                 "basis": "measured here", "n": None, "low": None, "high": None,
                                 "seeds": None, "models": []}]
    assert record["models"] == {}
    assert set(record["versions"]) >= {"python", "torch", "torchvision", "numpy"}
    assert record["seconds"] >= 0 and record["git_commit"]
    assert load(path)["name"] == "demo"


def test_claim_with_same_id_replaces():
    run = Run("demo", profile="quick", device="cpu")
    run.claim("a", "s", "p", 1.0, True)
    run.claim("a", "s", "p", 2.0, None)
    assert [(c.measured, c.holds) for c in run.claims] == [(2.0, None)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1.0", True])
def test_non_finite_or_non_numeric_metric_is_refused(bad):
    run = Run("demo", profile="quick", device="cpu")
    with pytest.raises((ValueError, TypeError), match="metric 'x'"):
        run.metric("x", bad)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        Run("demo", profile="fast")


def test_validate_names_problems():
    with pytest.raises(ValueError, match="lacks keys"):
        validate({"name": "x"})
    record = make_run(None).record()
    record["claims"][0]["holds"] = "yes"
    with pytest.raises(ValueError, match="holds must be true/false/null"):
        validate(record)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


def test_load_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result file at"):
        load(tmp_path / "nope.json")


def test_best_available_prefers_full(tmp_path):
    for profile in ("quick", "full"):
        Run("demo", profile=profile, device="cpu").save(tmp_path)
    assert results.best_available("demo", tmp_path)["profile"] == "full"
    assert results.best_available("other", tmp_path) is None


def test_glue_each_key_once_and_refuse_changed_values(monkeypatch):
    import myst_nb

    glued = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.append((name, value)))
    run = Run("demo", profile="quick", device="cpu")
    run.metric("a", 0.123456)
    run.glue()
    run.metric("b", 2)
    run.glue()
    assert glued == [("demo_a", 0.1235), ("demo_b", 2)]
    run.metric("a", 0.5)
    with pytest.raises(ValueError, match="changed from 0.1235 to 0.5 after it was glued"):
        run.glue()


def test_claim_kind_and_basis_are_checked():
    run = Run("demo", profile="quick", device="cpu")
    with pytest.raises(ValueError, match="kind must be one of"):
        run.claim("a", "s", "p", 1.0, True, kind="requirement")
    with pytest.raises(ValueError, match="basis must be one of"):
        run.claim("a", "s", "p", 1.0, True, basis="elsewhere")
    with pytest.raises(ValueError, match="cannot hold or fail"):
        run.claim("speed", "2x faster on a GPU", "p", 0.5, False, basis="other device")
    assert run.claim("speed", "2x faster on a GPU", "p", 0.5, None, basis="other device").holds is None


def test_verdict_and_model_status_feed_the_record():
    from cellnb.verdicts import compare

    run = Run("demo", profile="quick", device="cpu")
    run.model("ssrnet", converged=True, beats_floor=True, metric="count_mae", value=2.0, floor=10.0,
              curve=[1.0, 0.5, 0.4])
    run.model("unet", converged=True, beats_floor=False, metric="count_mae", value=9.9, floor=10.0)
    assert run.learned("ssrnet", "unet") == {"ssrnet": True, "unet": False}
    with pytest.raises(KeyError, match="no model status"):
        run.learned("elmgan")
    groups = [0] * 5 + [1] * 5 + [2] * 5
    a, b = [1.0, 1.2, 0.9, 1.1, 1.0] * 3, [3.0, 3.1, 2.9, 3.2, 3.0] * 3
    claim = run.verdict("c", "SSRNet counts better than U-Net", "abstract",
                        compare(a, b, groups=groups, learned=run.learned("ssrnet", "unet")))
    assert claim.holds is None and claim.seeds == 3 and claim.n == 15 and claim.models == ["ssrnet", "unet"]
    assert "not learned" in claim.note and claim.low < claim.high < 0
    record = run.record()
    validate(record)
    assert record["models"]["unet"]["beats_floor"] is False and record["models"]["ssrnet"]["val_curve"] == [1.0, 0.5, 0.4]
