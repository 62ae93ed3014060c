"""The committed results obey the rule of the project: no verdict from noise or from a model that
did not learn, every claim has a kind and a basis, every trained model is next to its floor."""

import json
from pathlib import Path

import pytest

from cellnb.results import BASES, KINDS, validate
from cellnb.utils import REPO_ROOT
from cellnb.verdicts import MIN_SEEDS

COMMITTED = sorted(p for profile in ("quick", "full") for p in (REPO_ROOT / "results" / profile).glob("*.json"))


def records():
    return [(p, json.loads(p.read_text())) for p in COMMITTED]


#: chapters that train no model for a task, so have no floor to beat: the data chapter (generator
#: statistics) and the speed chapter (timed training steps on random inputs)
NO_TRAINED_MODELS = {"data", "speed"}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_record_is_valid_and_obeys_the_verdict_rule(path):
    record = json.loads(Path(path).read_text())
    validate(record)
    models = record["models"]
    for claim in record["claims"]:
        assert claim["kind"] in KINDS and claim["basis"] in BASES
        if claim["basis"] == "other device":
            assert claim["holds"] is None, f"{claim['id']}: a claim about another device cannot be decided here"
        if claim["holds"] is None or claim["n"] is None:
            continue  # inconclusive, or a deterministic measurement (params, MACs)
        assert claim["seeds"] is not None and claim["seeds"] >= MIN_SEEDS, (
            f"{claim['id']}: a true/false verdict from {claim['seeds']} seed(s)")
        floor_claim = claim["id"].endswith("beats_floor")  # "X beats its floor" is decided by that comparison
        for name in claim["models"]:
            if name in models:
                m = models[name]
                assert m["converged"] and (m["beats_floor"] or floor_claim), (
                    f"{claim['id']}: verdict rests on {name}, which did not learn ({m})")
    if record["name"] not in NO_TRAINED_MODELS:
        assert models, f"{path.name}: no trained model recorded (converged / beats_floor)"
        assert any(k.startswith("floor_") for k in record["metrics"]), f"{path.name}: no floor_* metric"
        for name, m in models.items():
            assert m.get("floor") is not None, f"{path.name}: model {name} has no floor beside its metric"


def test_every_chapter_has_committed_quick_results():
    from cellnb.reproduce import CHAPTERS

    missing = [n for n in CHAPTERS if not (REPO_ROOT / "results" / "quick" / f"{n}.json").is_file()]
    assert not missing, f"no committed quick results for {missing}"
