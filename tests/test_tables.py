"""The generated tables: correct from hand-made records, and the committed ones are not stale."""

from cellnb import tables
from cellnb.results import Run


def test_committed_tables_are_up_to_date():
    stale = tables.stale(tables.generate())
    assert not stale, f"stale generated files, run `python -m cellnb.tables`: {stale}"


def test_generate_from_hand_made_results(tmp_path):
    for profile, mae in (("smoke", 9.0), ("quick", 2.5)):
        run = Run("ssrnet", profile=profile, device="cpu", seed=0)
        run.metric("count_mae", mae)
        run.claim("macs", "MACs 1/20 of U-Net", "abstract", 0.07, False, "ratio 0.07")
        run.claim("params", "15.9 M parameters", "spec", 15891076, True, "counted", kind="check")
        run.claim("gpu", "2x faster on a GPU", "abstract", 0.5, None, "CPU only", basis="other device")
        run.claim("seeds", "counts better", "abstract", -1.0, None, "x; inconclusive: only 1 seed(s)/split(s)")
        run.model("ssrnet", converged=True, beats_floor=False, metric="count_mae", value=mae, floor=mae)
        # converged by the last quarter, but the second half still bought 12 % on one of two seeds
        run.model("unet", converged=True, beats_floor=True, metric="count_mae", value=1.0, floor=mae,
                  half_budget_gain=0.07, seeds_converged_over_budget=1, seeds_half_budget=2)
        run.save(tmp_path)
    files = tables.generate(tmp_path, tmp_path / "gen")
    summary = files[tmp_path / "summary.csv"].splitlines()
    assert summary[0] == "name,profile,device,git_commit,seed,seconds,started,metric,value"
    assert len(summary) == 2 and summary[1].startswith("ssrnet,quick,cpu,") and summary[1].endswith(",count_mae,2.5")
    results_md = files[tmp_path / "gen" / "results.md"]
    assert "(quick profile)" in results_md and "| count_mae | 2.5 |" in results_md and "| 9 |" not in results_md
    assert "| ssrnet | count_mae | 2.5 | 2.5 |  | yes | **no** | – |" in results_md
    assert "| unet | count_mae | 1 | 2.5 |  | yes | yes | +7.0 % (1/2 seeds < 5 %) |" in results_md
    convergence = files[tmp_path / "gen" / "convergence.md"]
    assert "| ssrnet | quick | 2 | 2 | 1 | 0 | 0 | +7.0 % |" in convergence
    assert "| **all chapters** |  | 2 | 2 | 1 | 0 | 0 | +7.0 % |" in convergence
    claims_md = files[tmp_path / "gen" / "claims.md"]
    assert ("| ssrnet | MACs 1/20 of U-Net | does not hold | 0.07 |  |  | measured here | quick | abstract | ratio 0.07 |"
            in claims_md)
    papers, checks = claims_md.split("### Our own checks")
    assert "15.9 M parameters" in checks and "15.9 M parameters" not in papers
    assert "| ssrnet | 2x faster on a GPU | not testable here |" in papers
    summary = files[tmp_path / "gen" / "claims_summary.md"]
    assert ("Of the **3** claims of the papers checked in 1 chapter(s), **0** hold, **1** do not hold, "
            "**1** are inconclusive (1 because too few seeds) and **1** are not testable here "
            "(1 concern hardware not measured here, 0 other data).") in summary
    assert "**1** of our own checks" in summary and "1 pass, 0 fail" in summary
    reproduction = files[tmp_path / "gen" / "reproduction.md"]
    assert "[¬Re] not reproduced** (1)" in reproduction and "not: ssrnet" in reproduction
    svg = files[tmp_path / "gen" / "verdicts.svg"]
    assert svg.count("<rect") == 3 + 4 and "#c62828" in svg


def test_markdown_escapes_pipes():
    assert tables.markdown_table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"
    assert tables.fmt(0.123456) == "0.1235" and tables.fmt(3) == "3" and tables.fmt(None) == ""
