"""cellnb.sim2real.record on a hand-made result: the rule of the book applied to the real-frame checks."""

import numpy as np
import pandas as pd

from cellnb import results, sim2real

FLAT = [1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.2, 0.2, 0.2]          # converged
FALLING = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]          # still falling: not converged


def _history(curve):
    h = pd.DataFrame({"step": np.arange(1, len(curve) + 1) * 10, "val_loss": curve})
    h.attrs["steps_per_s"] = 5.0
    return h


def _result(aji_by_scenario, curves):
    rows = []
    for scenario, base in aji_by_scenario.items():
        for seed in (0, 1, 2):
            for k, frame in enumerate(sim2real.TEST_FRAMES):
                v = base + 0.01 * k + 0.002 * seed
                rows.append({"scenario": scenario, "seed": seed, "frame": frame, "ap50": v, "aji": v, "dice": v})
    floor = pd.DataFrame([{"frame": f, "ap50": 0.5 + 0.01 * k, "aji": 0.5 + 0.01 * k, "dice": 0.8}
                          for k, f in enumerate(sim2real.TEST_FRAMES)])
    return {"method": "unet", "scores": pd.DataFrame(rows), "floor": floor, "seeds": [0, 1, 2],
            "ceiling": {"ap50": 0.95, "aji": 0.95, "dice": 1.0},
            "histories": {(s, seed): _history(curves[s]) for s in aji_by_scenario for seed in (0, 1, 2)},
            "steps_per_s": {s: 5.0 for s in aji_by_scenario}}


def test_record_gives_verdicts_only_where_models_converged():
    run = results.Run("t", profile="smoke", device="cpu", seed=0, settings={})
    res = _result({"generated": 0.7, "real": 0.4, "generated+real": 0.8},
                  {"generated": FLAT, "real": FLAT, "generated+real": FALLING})
    found = sim2real.record(run, res, prefix="real", label="U-Net")
    assert found["real_generated_only_beats_floor"].holds is True       # +0.2 on every frame and seed
    assert found["real_real_only_beats_floor"].holds is False           # -0.1 on every frame and seed
    assert found["real_finetuned_beats_floor"].holds is None            # its curves still fall
    assert found["real_pretraining_helps"].holds is None                # real-only did not beat the floor
    assert abs(run.metrics["real_generated_only_aji"] - np.mean([0.7 + 0.01 * k + 0.002 * s
                                                                 for s in range(3) for k in range(5)])) < 1e-9
    assert run.metrics["floor_real_aji"] == np.mean([0.5 + 0.01 * k for k in range(5)])
    assert run.models["real_generated_only_seed1"]["converged"] and run.models["real_generated_only_seed1"]["beats_floor"]
    assert not run.models["real_real_only_seed0"]["beats_floor"]
    assert not run.models["real_finetuned_seed2"]["converged"]
    assert {c.kind for c in run.claims} == {"check"}


def test_table_lists_every_route_then_the_floor():
    res = _result({"generated": 0.7, "real": 0.4}, {"generated": FLAT, "real": FLAT})
    t = sim2real.table({"U-Net": res, "MC-Unet": res})
    assert list(t["method"]) == ["U-Net", "U-Net", "U-Net", "MC-Unet", "MC-Unet", "MC-Unet", "Otsu + watershed"]
    assert t["beats floor (AP@0.5)"].tolist()[:2] == [True, False]


def _fake_real(width: int = sim2real.VAL_COLUMNS + 64) -> dict:
    """Ten 'real' frames of generated nuclei, shaped so that real_split has its train, val and test parts."""
    from cellnb import data

    frames, labels = [], []
    for t in range(10):
        s = data.nuclei(500 + t, size=width, n_nuclei=40, regime="dense")
        frames.append(s["image"][: sim2real.VAL_ROWS].astype(np.float32))
        labels.append(s["labels"][: sim2real.VAL_ROWS].astype(np.int32))
    return {"frames": np.stack(frames), "labels": np.stack(labels)}


def test_evaluate_chooses_each_routes_instance_step_on_its_own_validation_images():
    from cellnb.methods import get_method

    result = sim2real.evaluate("unet", seeds=(0,), steps=2, finetune_steps=1, n_generated=3, real=_fake_real(),
                               train_kwargs={"batch_size": 2, "crop": 32}, tune_postprocess=True)
    options = get_method("unet").postprocess_options("instances")
    assert set(result["postprocess"]) == {(s, 0) for s in sim2real.SCENARIOS}
    assert all(choice in options for choice in result["postprocess"].values())
    assert len(result["scores"]) == len(sim2real.SCENARIOS) * len(sim2real.TEST_FRAMES)
    assert np.isfinite(result["scores"][["ap50", "aji", "dice"]].to_numpy(float)).all()
    untuned = sim2real.evaluate("unet", seeds=(0,), steps=2, scenarios=("real",), real=_fake_real(),
                                train_kwargs={"batch_size": 2, "crop": 32})
    assert untuned["postprocess"] == {}
