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
