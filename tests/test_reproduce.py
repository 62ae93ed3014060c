"""The runner: parameter checks, unknown names, failures reported with cell and error."""

import json
import textwrap

import pytest

from cellnb import reproduce

HEADER = "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n"
PARAMS = '# %% tags=["parameters"]\nprofile = "quick"\ndevice = "auto"\nseed = 0\ndata_root = None\nn = 1\n'
GOOD = HEADER + "\n# %% [markdown]\n# # Good\n\n" + PARAMS + textwrap.dedent("""
    # %%
    from cellnb import results
    run = results.Run("good", profile, device, seed, data_root)
    run.metric("x", n)
    run.save()
    """)
BAD = HEADER + "\n" + PARAMS + '\n# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n'
NO_PARAMS = HEADER + "\n# %%\nprofile = 'quick'\n"


@pytest.fixture
def book(tmp_path):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    (notebooks / "good.py").write_text(GOOD)
    (notebooks / "bad.py").write_text(BAD)
    return tmp_path


def args(book, *extra):
    return ["--notebooks-dir", str(book / "nb"), "--results-dir", str(book / "res"),
            "--output-dir", str(book / "out"), "--profile", "smoke", *extra]


def test_declared_parameters():
    import jupytext

    params = reproduce.declared_parameters(jupytext.reads(GOOD, fmt="py:percent"))
    assert params == {"profile": "quick", "device": "auto", "seed": 0, "data_root": None, "n": 1}
    with pytest.raises(reproduce.RunnerError, match="exactly one cell tagged 'parameters', found 0"):
        reproduce.declared_parameters(jupytext.reads(NO_PARAMS, fmt="py:percent"))


def test_parse_value():
    assert reproduce.parse_value("3") == 3 and reproduce.parse_value("0.5") == 0.5
    assert reproduce.parse_value("None") is None and reproduce.parse_value("unet") == "unet"


def test_unknown_notebook_lists_valid_ones(book, capsys):
    assert reproduce.main(args(book, "--only", "nosuch")) == 2
    assert "unknown notebook(s) ['nosuch']; choose from ['bad', 'good']" in capsys.readouterr().err


def test_unknown_parameter_lists_declared_ones(book, capsys):
    assert reproduce.main(args(book, "--only", "good", "-p", "epochs", "3")) == 2
    err = capsys.readouterr().err
    assert "does not declare parameter(s) ['epochs']" in err
    assert "['data_root', 'device', 'n', 'profile', 'seed']" in err


def test_unknown_profile_and_standard_parameter_via_p(book, capsys):
    assert reproduce.main(["--notebooks-dir", str(book / "nb"), "--profile", "fast"]) == 2
    assert "unknown profile 'fast'; choose from ['auto', 'smoke', 'quick', 'full']" in capsys.readouterr().err
    assert reproduce.main(args(book, "-p", "seed", "3")) == 2
    assert "use --seed instead of -p seed" in capsys.readouterr().err


def test_list(book, capsys):
    assert reproduce.main(["--notebooks-dir", str(book / "nb"), "--list"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "n=1" in out


def test_runs_keep_going_and_name_the_failed_cell(book, capsys):
    code = reproduce.main(args(book, "-p", "n", "7"))
    captured = capsys.readouterr()
    assert code == 1
    assert "bad: cell" in captured.err and "ValueError: boom" in captured.err
    record = json.loads((book / "res" / "smoke" / "good.json").read_text())
    assert record["metrics"] == {"x": 7} and record["profile"] == "smoke"
    assert (book / "out" / "good.ipynb").is_file() and (book / "out" / "bad.ipynb").is_file()
    table = captured.out
    assert "good" in table and "ok" in table and "failed" in table
    timings = json.loads((book / "res" / "timings" / "smoke.json").read_text())
    assert set(timings["notebooks"]) == {"good"}
