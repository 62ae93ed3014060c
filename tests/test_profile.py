"""Hand-checked parameter, MAC and memory-traffic counts; benchmark table shape."""

import pytest
import torch
from torch import nn

from cellnb import profile

CONV = lambda: nn.Conv2d(3, 8, 3, padding=1)  # noqa: E731
SHAPE = (1, 3, 16, 16)


def test_count_params_conv_and_linear():
    assert profile.count_params(CONV()) == 8 * 3 * 9 + 8
    assert profile.count_params(nn.Linear(10, 4)) == 10 * 4 + 4
    frozen = nn.Sequential(nn.Linear(10, 4), nn.Linear(4, 2))
    frozen[0].requires_grad_(False)
    assert profile.count_params(frozen, trainable_only=True) == 4 * 2 + 2


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_count_macs_conv_and_linear(device):
    # conv: each of the 8·16·16 outputs needs 3·3·3 multiply-adds (bias not counted)
    assert profile.count_macs(CONV(), SHAPE, device=device) == 8 * 3 * 9 * 16 * 16
    # linear on a batch of 2: 2·10·4
    assert profile.count_macs(nn.Linear(10, 4), (2, 10), device=device) == 2 * 10 * 4
    net = nn.Sequential(CONV(), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 256, 5))
    by_op = profile.count_macs(net, SHAPE, by_operator=True, device=device)
    assert by_op == {"aten.convolution": 8 * 3 * 9 * 256, "aten.addmm": 8 * 256 * 5}


def test_memory_traffic_conv_hand_value():
    # input 3·16·16 floats + output 8·16·16 floats + weights (8·3·9 + 8) floats, 4 bytes each
    expected = (3 * 256 + 8 * 256 + 8 * 27 + 8) * 4
    assert expected == 12160
    assert profile.memory_traffic(CONV(), SHAPE) == expected
    assert profile.memory_traffic(CONV(), SHAPE, device="meta") == expected
    assert profile.memory_traffic(CONV().half(), SHAPE, dtype=torch.float16) == expected // 2


def test_memory_traffic_sums_leaf_calls():
    net = nn.Sequential(nn.Linear(10, 4), nn.ReLU())
    # Linear: in 2·10 + out 2·4 + params 44; ReLU: in 2·4 + out 2·4; float32
    expected = (20 + 8 + 44 + 8 + 8) * 4
    assert profile.memory_traffic(net, (2, 10)) == expected
    table = profile.memory_traffic(net, (2, 10), detail=True)
    assert table.module.tolist() == ["0", "1"] and table.total_bytes.sum() == expected


def test_peak_memory_cpu_estimate():
    # weights 224 + input 768 + conv output 2048 floats
    assert profile.peak_memory(CONV(), SHAPE, device="cpu") == (224 + 768 + 2048) * 4


def test_benchmark_interleaved_table():
    models = {"conv": CONV(), "bigger": nn.Sequential(CONV(), nn.Conv2d(8, 8, 3, padding=1))}
    models["conv"].train()
    df = profile.benchmark(models, SHAPE, warmup=1, repeats=5)
    assert df.model.tolist() == ["conv", "bigger"]
    assert (df.device == "cpu").all() and (df.batch == 1).all() and (df.repeats == 5).all()
    assert (df.median_ms > 0).all() and (df.iqr_ms >= 0).all() and (df.q1_ms <= df.q3_ms).all()
    assert df.throughput.tolist() == pytest.approx((1000 / df.median_ms).tolist())
    assert models["conv"].training  # mode restored
    seq = profile.benchmark(models, {"conv": SHAPE, "bigger": (2, 3, 16, 16)}, warmup=0, repeats=2, interleaved=False)
    assert seq.batch.tolist() == [1, 2]
    with pytest.raises(KeyError, match="bigger"):
        profile.benchmark(models, {"conv": SHAPE}, repeats=1)


def test_summary_rows_and_bad_shape():
    df = profile.summary({"conv": CONV(), "linear": nn.Sequential(nn.Flatten(), nn.Linear(768, 2))}, SHAPE)
    assert df.loc["conv", "params"] == 224 and df.loc["conv", "macs"] == 55296
    assert df.loc["conv", "memory_traffic"] == 12160
    assert df.loc["linear", "macs"] == 768 * 2
    with pytest.raises(ValueError, match="input_shape"):
        profile.count_macs(CONV(), (1, 3, 0, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory_and_benchmark():
    conv = CONV()
    assert profile.peak_memory(conv, SHAPE, device="cuda") >= (224 + 768 + 2048) * 4
    df = profile.benchmark({"conv": conv}, SHAPE, device="cuda", warmup=1, repeats=3)
    assert df.device.iloc[0] != "cpu" and (df.median_ms > 0).all()


def test_train_speed_rows_per_variant_and_errors():
    import torch

    from cellnb.profile import train_speed

    t = train_speed(lambda: torch.nn.Conv2d(2, 4, 3, padding=1), (2, 2, 8, 8), steps=2, warmup=1, repeats=2,
                    variants=("default", "channels_last"))
    assert list(t.variant) == ["default", "channels_last"] and (t.repeats == 2).all()
    assert t.speedup.iloc[0] == 1.0 and (t.steps_per_s > 0).all() and (t.note == "").all()
    with pytest.raises(ValueError, match="unknown variants"):
        train_speed(lambda: torch.nn.Conv2d(1, 1, 1), (1, 1, 4, 4), variants=("fast",))


def test_train_speed_bfloat16_is_measured_only_where_native(monkeypatch):
    import torch

    from cellnb import profile, utils

    for native in (True, False):
        monkeypatch.setattr(utils, "native_bfloat16", lambda device, native=native: native)
        built = []
        t = profile.train_speed(lambda: built.append(1) or torch.nn.Conv2d(2, 4, 3, padding=1), (2, 2, 8, 8),
                                steps=2, warmup=1, repeats=1, variants=("default", "bfloat16")).set_index("variant")
        assert len(built) == (2 if native else 1)  # a variant that is not measured builds no model
        assert (t.loc["bfloat16", "steps_per_s"] > 0) == native
        assert (t.loc["bfloat16", "note"] == "") == native and t.loc["default", "steps_per_s"] > 0
        if not native:
            assert "no native bfloat16" in t.loc["bfloat16", "note"] and t.loc["bfloat16", "repeats"] == 0
