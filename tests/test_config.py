import pytest

from cellnb.config import PROFILES, resolve_profile, settings_for

TABLE = {"smoke": {"epochs": 1, "size": 32}, "quick": {"epochs": 5, "size": 64}, "full": {"epochs": 50, "size": 256}}


def test_settings_pick_profile_and_override():
    cfg = settings_for(TABLE, "quick", epochs=2)
    assert (cfg.epochs, cfg.size, cfg.profile) == (2, 64, "quick")
    assert cfg.as_dict() == {"epochs": 2, "size": 64}
    assert settings_for(TABLE, "full", epochs=None).epochs == 50  # None keeps the profile value


def test_unknown_override_lists_known_keys():
    with pytest.raises(KeyError, match=r"unknown setting\(s\) \['epoch'\]; known: \['epochs', 'size'\]"):
        settings_for(TABLE, "quick", epoch=3)


def test_unknown_profile_and_attribute():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        settings_for(TABLE, "fast")
    with pytest.raises(AttributeError, match="no setting 'lr'"):
        settings_for(TABLE, "smoke").lr


def test_profiles_must_share_keys():
    bad = dict(TABLE, full={"epochs": 50})
    with pytest.raises(ValueError, match=r"differ in keys \['size'\]"):
        settings_for(bad, "smoke")


def test_resolve_profile():
    assert resolve_profile("smoke") == "smoke"
    assert resolve_profile("auto", "cpu") == "quick"
    assert PROFILES == ("smoke", "quick", "full")
    with pytest.raises(ValueError, match="unknown profile 'paper'"):
        resolve_profile("paper")


def test_start_chapter_sets_up_settings_device_seed_and_run():
    import torch

    from cellnb import config

    table = {"smoke": {"steps": 1}, "quick": {"steps": 5}, "full": {"steps": 50}}
    cfg, dev, run = config.start_chapter("demo", table, profile="quick", device="cpu", seed=3, num_threads=1, steps=7)
    assert cfg.steps == 7 and dev == "cpu" and torch.get_num_threads() == 1
    assert run.name == "demo" and run.profile == "quick" and run.seed == 3
    first = torch.rand(1)
    config.start_chapter("demo", table, profile="quick", device="cpu", seed=3)
    assert torch.equal(first, torch.rand(1))  # seeded the same way each time
    with pytest.raises(ValueError, match="unknown profile"):
        config.start_chapter("demo", table, profile="fast")
