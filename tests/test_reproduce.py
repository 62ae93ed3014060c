"""The runner: parameter checks, unknown names, failures reported with cell and error."""

import json
import textwrap
import time

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


# ---------------------------------------------------------------------------- parameter types
@pytest.mark.parametrize("default, text, expected", [
    (1, "3", 3), (0.5, "2", 2.0), (0.5, "0.25", 0.25), (True, "False", False), ("unet", "fcn", "fcn"),
    ("unet", "3", "3"), (None, "None", None), (None, "4", 4),
])
def test_coerce_parameter_accepts_matching_types(default, text, expected):
    value = reproduce.coerce_parameter("nb", "k", text, default, hint=2 if default is None else None)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("default, hint, text, expected", [
    (1, None, "banana", "expects int"), (1, None, "0.5", "expects int"), (1, None, "True", "expects int"),
    (0.5, None, "banana", "expects float"), (True, None, "1", "expects bool"),
    (None, 2, "banana", "expects int or None"), (None, 0.1, "fast", "expects float or None"),
])
def test_coerce_parameter_refuses_other_types(default, hint, text, expected):
    with pytest.raises(reproduce.RunnerError, match=expected) as info:
        reproduce.coerce_parameter("nb", "k", text, default, hint)
    assert "'k'" in str(info.value) and repr(text) in str(info.value)  # names the parameter and the value


def test_type_mismatch_is_refused_before_running(book, capsys):
    assert reproduce.main(args(book, "--only", "good", "-p", "n", "banana")) == 2
    err = capsys.readouterr().err
    assert "parameter 'n' of notebook 'good' expects int (declared default 1), got 'banana'" in err
    assert not (book / "out").exists() and not (book / "res").exists()


def test_none_default_takes_the_type_of_the_profile_value(tmp_path, capsys):
    """ssrnet declares ``vgg_splits = None`` (the profile's value, an int): a word is refused."""
    assert isinstance(reproduce.profile_hint("ssrnet", "vgg_splits", "smoke"), int)
    code = reproduce.main(["--profile", "smoke", "--only", "ssrnet", "-p", "vgg_splits", "banana",
                           "--results-dir", str(tmp_path / "res"), "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "parameter 'vgg_splits' of notebook 'ssrnet' expects int or None" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_device_cuda_without_cuda_refuses_cleanly(book, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert reproduce.main(args(book, "--only", "good", "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert "--device cuda requested but torch" in err and "sees no CUDA device" in err
    assert not (book / "out").exists() and not (book / "res").exists()  # nothing half-written


# ---------------------------------------------------------------------------- cache, hygiene
CHAPTER = HEADER + "\n# %% [markdown]\n# # Chapter\n\n" + PARAMS + textwrap.dedent("""
    # %%
    from cellnb import results
    print("reading", data_root)
    run = results.Run("good", profile, device, seed, data_root)
    run.metric("x", n)
    run.save()
    """)
AGGREGATE = HEADER + "\n" + PARAMS.replace("n = 1\n", "") + textwrap.dedent("""
    # %%
    from cellnb import results
    from cellnb.utils import results_dir
    good = results.load(results_dir() / profile / "good.json")
    run = results.Run("comparison", profile, device, seed, data_root)
    run.metric("x_seen", good["metrics"]["x"])
    run.save()
    """)


@pytest.fixture
def cached_book(tmp_path, monkeypatch):
    # the book's comparison no longer aggregates, but the mechanism stays: a chapter that reads others
    monkeypatch.setattr(reproduce, "AGGREGATES", {"comparison": None})
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    (notebooks / "good.py").write_text(CHAPTER)
    (notebooks / "comparison.py").write_text(AGGREGATE)
    data = tmp_path / "machine-specific-data-root-4711"
    (data / "vgg_cells").mkdir(parents=True)
    (data / "vgg_cells" / "001cell.png").write_bytes(b"x")
    return tmp_path, data


def run_book(root, data, *extra):
    summary = root / "summary.json"
    code = reproduce.main(args(root, "--data-root", str(data), "--summary-json", str(summary), *extra))
    return code, json.loads(summary.read_text())


def context(root, data, *extra):
    parsed = reproduce.build_parser().parse_args(args(root, "--data-root", str(data), *extra))
    ctx, plans, _, _ = reproduce.plan(parsed, reproduce.available_notebooks(root / "nb"))
    return ctx, dict(plans)


def test_cache_reruns_only_what_changed_and_hides_machine_paths(cached_book, capfd):
    root, data = cached_book
    code, first = run_book(root, data)
    out = capfd.readouterr()
    assert code == 0, out.err
    assert [o["cached"] for o in first.values()] == [False, False]
    # kernel noise goes to each notebook's log, not to the terminal
    for noise in ("Kernel is running over TCP", "KeyboardInterrupt caught in kernel"):
        assert noise not in out.out + out.err
    assert (root / "out" / "logs" / "good.log").is_file()
    # no machine path in the executed notebook the book renders; papermill's cell is hidden
    executed = (root / "out" / "good.ipynb").read_text()
    assert str(data) not in executed and reproduce.DATA_ROOT_PLACEHOLDER in executed
    nb = json.loads(executed)
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]
    assert not any("cellnb-runner-deps" in c["metadata"].get("tags", []) for c in nb["cells"])
    entry = json.loads((root / "out" / "good.cache.json").read_text())
    assert "cellnb/results.py" in entry["deps"]["modules"] and entry["run_date"]
    timings = root / "res" / "timings" / "smoke.json"
    before = timings.read_text()

    # nothing changed: nothing executed, the table says cached, timings untouched
    code, second = run_book(root, data)
    out = capfd.readouterr().out
    assert code == 0 and [o["cached"] for o in second.values()] == [True, True]
    assert "cached (" + entry["run_date"] in out and "0 executed, 2 cached" in out
    assert timings.read_text() == before
    assert second["good"]["headline"] == {"x": 1}

    # forcing the aggregated chapter re-runs the aggregating one
    code, third = run_book(root, data, "--force", "good")
    assert code == 0 and [o["cached"] for o in third.values()] == [False, False]
    assert third["comparison"]["reason"] == "re-executed: good"

    # what makes a chapter stale, without executing anything
    ctx, plans = context(root, data)
    digests = reproduce.package_digests()
    assert reproduce.staleness(ctx, "good", plans["good"], digests, False)[0] is not None
    assert reproduce.staleness(ctx, "comparison", plans["comparison"], digests, False)[0] is not None
    changed = dict(digests, **{"cellnb/results.py": "edited"})
    _, why, _ = reproduce.staleness(ctx, "good", plans["good"], changed, False)
    assert why == "changed: package: cellnb/results.py"
    assert reproduce.staleness(ctx, "comparison", plans["comparison"], changed, False)[0] is None
    unused = dict(digests, **{"cellnb/tables.py": "edited"})  # the kernel never imported it
    assert reproduce.staleness(ctx, "good", plans["good"], unused, False)[0] is not None
    ctx_n, plans_n = context(root, data, "--only", "good", "-p", "n", "2")
    assert "parameters" in reproduce.staleness(ctx_n, "good", plans_n["good"], digests, False)[1]
    (data / "vgg_cells" / "002cell.png").write_bytes(b"y")
    ctx_d, plans_d = context(root, data)
    assert reproduce.staleness(ctx_d, "good", plans_d["good"], digests, False)[1] == "changed: data"
    (data / "vgg_cells" / "002cell.png").unlink()
    ctx.versions = dict(ctx.versions, torch="0.0")
    assert reproduce.staleness(ctx, "good", plans["good"], digests, False)[1] == "changed: versions"
    (root / "nb" / "good.py").write_text(CHAPTER + "\n# %%\ny = 2\n")
    ctx, plans = context(root, data)
    assert reproduce.staleness(ctx, "good", plans["good"], digests, False)[1] == "changed: notebook"
    _, why, _ = reproduce.staleness(ctx, "comparison", plans["comparison"], digests, False)
    assert why == "changed: aggregates/good"  # stale because the chapter it reads is
    (root / "res" / "smoke" / "good.json").unlink()
    assert reproduce.staleness(ctx, "good", plans["good"], digests, False)[1] == "result file missing"


def test_time_limit_stops_running_notebooks_and_skips_pending(tmp_path, capsys):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    (notebooks / "a_slow.py").write_text(HEADER + "\n" + PARAMS + "\n# %%\nimport time\ntime.sleep(300)\n")
    (notebooks / "b_later.py").write_text(GOOD)
    started = time.time()
    code = reproduce.main(args(tmp_path, "--time-limit", "6", "--only", "a_slow", "b_later"))
    assert code == 1 and time.time() - started < 60
    err = capsys.readouterr().err
    assert "a_slow: stopped at the --time-limit" in err and "b_later: not started: --time-limit reached" in err
    assert not (tmp_path / "out" / "a_slow.cache.json").exists()


def test_longest_first_orders_by_last_measured_time(tmp_path):
    (tmp_path / "timings").mkdir()
    (tmp_path / "timings" / "quick.json").write_text(json.dumps(
        {"notebooks": {"a": {"seconds": 10, "device": "cpu"}, "comparison": {"seconds": 700, "device": "cpu"},
                       "b": {"seconds": 300, "device": "cpu"}}}))
    assert reproduce.longest_first(["a", "b", "new", "comparison"], tmp_path, "quick") == ["comparison", "b", "a", "new"]
    assert reproduce.longest_first(["a", "b"], tmp_path, "smoke") == ["a", "b"]  # nothing measured: book order
