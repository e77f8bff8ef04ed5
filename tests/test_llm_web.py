"""LLM Web Dynamics (llm_bridge.llm_web, llm_web_report, web_gmm_proxy, llm_web_cli) on tiny models.

One context-mode run through the CLI (3 one-layer byte-level nanoGPTs trained for 20 steps on the language reference
topics, L = 4, T = 3) is shared; the other runs reuse its trained base models (copied ``base/``), as a resumed run
would.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from collapse_jax import gmm_network
from llm_bridge import llm_web, llm_web_cli
from llm_bridge import web_gmm_proxy as proxy
from llm_bridge.embedding_metrics import measure_embeddings

TINY = dict(num_models=3, samples=4, num_steps=3, num_human=6, max_new_tokens=16, model_layers=1, model_heads=2,
            model_dim=32, model_context=192, tokenizer="byte", train_steps=20, train_batch=8,
            corpus_docstrings=False, gmm_replicates=50, proxy_dims=2, proxy_components=2)
CLI_ARGS = ["--num-models", "3", "--samples", "4", "--num-steps", "3", "--num-human", "6", "--max-new-tokens", "16",
            "--model-layers", "1", "--model-heads", "2", "--model-dim", "32", "--model-context", "192",
            "--tokenizer", "byte", "--train-steps", "20", "--train-batch", "8", "--corpus-docstrings", "false",
            "--gmm-replicates", "50", "--proxy-dims", "2", "--proxy-components", "2"]
ARTEFACTS = ("config.json", "human.json", "human.npz", "arrays.npz", "arrays.json", "summary.json", "report.md",
             "dnorm.png", "mds.png", "spread.png", "diversity.png", "proxy.png", "manifest.json")


@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web") / "context"
    assert llm_web_cli.main([*CLI_ARGS, "--out", str(folder)]) == 0
    return folder


def _steps(folder, count):
    out = []
    for t in range(count):
        rec, emb = llm_web.read_step(folder, t)
        rec.pop("seconds")
        out.append((rec, emb))
    return out


def _assert_same_steps(a, b, count):
    for (ra, ea), (rb, eb) in zip(_steps(a, count), _steps(b, count)):
        assert ra == rb
        np.testing.assert_array_equal(ea, eb)


def _with_base(src, dst):
    """A new run folder holding ``src``'s trained base models (what a resumed run finds)."""
    dst.mkdir(parents=True)
    shutil.copytree(src / "base", dst / "base")
    return dst


def test_run_writes_every_artefact_with_finite_metrics(context_run):
    for name in ARTEFACTS:
        assert (context_run / name).is_file(), name
    cfg = llm_web.saved_config(context_run)
    assert cfg == llm_web.WebConfig(**TINY)
    summary = json.loads((context_run / "summary.json").read_text())
    for key in ("dnorm_t0", "dnorm_tT", "dnorm_ratio", "gmm_median_tT"):
        assert np.isfinite(summary[key]) and summary[key] >= 0, key
    # (None where the floor-corrected curve has no t = 0 value: below its floor there)
    assert summary["gmm_coverage"] is None or 0.0 <= summary["gmm_coverage"] <= 1.0
    assert 0.0 <= summary["gmm_coverage_raw"] <= 1.0
    assert summary["proxy_coverage"]["1"] is None                 # one component: D = 0, band undefined (null)
    assert 0.0 <= summary["proxy_coverage"]["2"] <= 1.0
    assert summary["dnorm_recorded_max_abs_diff"] == 0.0
    with np.load(context_run / "arrays.npz") as z:
        assert z["gmm_low"].shape == (4,) and z["proxy_high"].shape == (2, 4)
        assert np.all(np.isfinite(z["spread"])) and np.all(z["spread"] > 0)
        np.testing.assert_allclose(z["gmm_median"][0], 1.0)
        assert summary["dnorm_min_ratio"] == pytest.approx(z["dnorm_normalised"][1:].min(), rel=1e-12)
    import xarray as xr

    with xr.open_dataset(context_run / "arrays.nc") as ds:  # coordinates, for ds.sel (none before 2026-12-05)
        assert ds["components"].values.tolist() == [1, 2] and ds["step"].values.tolist() == [0, 1, 2, 3]
        assert ds["proxy_high"].sel(components=2).shape == (4,) and ds["model"].values.tolist() == [0, 1, 2]
    report = (context_run / "report.md").read_text(encoding="utf-8")
    assert "Sample answers at t = 1" in report
    # every table row has its header's columns (a user trial, 2026-12-05: "| ||D(0)||_F | 1.03 |" split into five)
    for table in report.split("\n\n"):
        rows = [r for r in table.splitlines() if r.startswith("|")]
        assert len({r.count("|") for r in rows}) <= 1, rows


def test_recorded_dnorm_equals_recomputation_from_stored_embeddings(context_run):
    internet = len(json.loads((context_run / "human.json").read_text())["texts"])
    for t in range(4):
        rec, emb = llm_web.read_step(context_run, t)
        assert emb.shape == (3, 4, 384) and np.all(np.isfinite(emb))
        x = emb.astype(np.float64).mean(axis=1)
        by_hand = np.sqrt(sum(np.sum((x[i] - x[j]) ** 2) for i in range(3) for j in range(3)))
        assert rec["metrics"]["dnorm"] == measure_embeddings(emb, sigma=False, mds_components=None).dnorm
        np.testing.assert_allclose(rec["metrics"]["dnorm"], by_hand, rtol=1e-6)
        # Algorithm 1: |A(t)| = |A(0)| + n t, k_t = floor(beta |A(t)|), one posted answer per model
        assert rec["internet_size"] == internet + 3 * t
        assert rec["k"] == int(0.5 * rec["internet_size"])
        assert all(len(set(r)) == rec["k"] for r in rec["retrieved"])
        assert rec["posted"] == [r[0] for r in rec["responses"]]
        assert all(r.startswith(llm_web.WebConfig().query) for rows in rec["responses"] for r in rows)


def test_prompt_holds_as_many_retrieved_texts_as_the_context_allows(context_run):
    from llm_bridge.nanogpt import NanoGPT

    model = NanoGPT.load(context_run / "base" / "model-0")
    texts = json.loads((context_run / "human.json").read_text())["texts"]
    query, new = "When an exception is raised", 16
    prompt, m = llm_web.fit_context(model, texts, query, " ", new)
    assert prompt == " ".join([*texts[:m], query])
    assert llm_web.prompt_tokens(model, prompt) + new <= model.context_length
    if m < len(texts):
        longer = " ".join([*texts[:m + 1], query])
        assert llm_web.prompt_tokens(model, longer) + new > model.context_length
    rec, _ = llm_web.read_step(context_run, 2)
    assert all(0 <= f <= rec["k"] for f in rec["fitted"])
    assert all(p + new <= 192 for p in rec["prompt_tokens"])
    with pytest.raises(ValueError, match="query alone"):
        llm_web.fit_context(model, texts, "x" * 300, " ", new)


def test_a_step_that_reads_nothing_warns(context_run):
    """A query that leaves no room for any retrieved text ran the whole experiment on the query alone, with no word
    (a user trial, 2026-12-06)."""
    from llm_bridge.nanogpt import NanoGPT

    cfg = llm_web.WebConfig(**{**TINY, "query": "x" * 170})
    models = [NanoGPT.load(context_run / "base" / f"model-{i}") for i in range(3)]
    texts = json.loads((context_run / "human.json").read_text())["texts"]
    with pytest.warns(UserWarning, match="no retrieved text fits"):
        rec, _ = llm_web.run_step(cfg, 0, models, texts, llm_web.load_encoder(cfg))
    assert rec["fitted"] == [0, 0, 0]


@pytest.mark.parametrize("until", [0, -1, TINY["num_steps"] + 1])
def test_until_outside_the_steps_is_refused_before_the_folder(until, tmp_path):
    """A user trial (2026-12-06): until = 0 wrote a run of no steps and until beyond T ran to the end, where the
    nanoGPT's --until refuses both."""
    with pytest.raises(ValueError, match=r"until must be an integer"):
        llm_web.run(llm_web.WebConfig(**TINY), tmp_path / "run", until=until)
    assert not (tmp_path / "run").exists()


def test_killed_context_run_resumes_to_the_same_result(context_run, tmp_path, capsys):
    folder = _with_base(context_run, tmp_path / "resumed")
    cfg = llm_web.WebConfig(**TINY)
    llm_web.run(cfg, folder, until=2)
    assert llm_web.completed_steps(folder) == 2 and not (folder / "summary.json").exists()
    # an --analyse of the part so far (a third audit, 2026-12-04: it wrote manifest.json, and a later --until run
    # printed that summary as the result) is not a finished run
    assert llm_web_cli.main(["--analyse", str(folder)]) == 0 and not (folder / "manifest.json").exists()
    assert "Partial run: steps t = 0..1 of 0..3" in (folder / "report.md").read_text()
    assert llm_web_cli.main(["--resume", "--out", str(folder), "--until", "2"]) == 0
    assert "nothing generated" not in capsys.readouterr().out
    assert llm_web_cli.main(["--resume", "--out", str(folder), "--until", "1"]) == 0   # (said nothing; a user trial)
    assert "--until 1: nothing generated" in capsys.readouterr().out
    (folder / "steps" / "step-0001.json").unlink()        # killed after writing step 1's embeddings, before its record
    llm_web.run(cfg, folder, analyse_after=False)
    _assert_same_steps(context_run, folder, 4)
    for i in range(3):                                    # the cached base models were loaded, not retrained
        assert json.loads((folder / "base" / f"model-{i}" / "manifest.json").read_text()) == \
            json.loads((context_run / "base" / f"model-{i}" / "manifest.json").read_text())


def test_finetune_mode_resumes_to_the_same_result(context_run, tmp_path):
    cfg = llm_web.WebConfig(**{**TINY, "mode": "finetune", "num_steps": 1, "finetune_steps": 2,
                               "finetune_batch": 4})
    whole = llm_web.run(cfg, _with_base(context_run, tmp_path / "whole"), analyse_after=False)
    part = _with_base(context_run, tmp_path / "part")
    llm_web.run(cfg, part, until=1)
    assert sorted(p.name for p in (part / "state").iterdir()) == ["step-0000"]
    llm_web.run(cfg, part, analyse_after=False)
    _assert_same_steps(whole, part, 2)
    rec, _ = llm_web.read_step(whole, 1)
    assert rec["fitted"] == [0, 0, 0] and all(len(losses) == 2 for losses in rec["finetune_losses"])
    # nothing is retrieved into a prompt: n/a, not "0 fitted" (a user trial, 2026-12-06)
    from llm_bridge import llm_web_report

    assert llm_web_report.analyse(whole)["mean_fitted"] is None
    assert "retrieved texts that fit the prompt, mean | n/a |" in (whole / "report.md").read_text()
    assert "Partial run" not in (whole / "report.md").read_text()
    # a weak run says so, and names the steps its "thirds" average (a user trial, 2026-12-06)
    report = (whole / "report.md").read_text()
    assert "**Read with care:**" in report and "a small run (T = 1, L = 4, gmm_replicates = 50)" in report
    assert "no retrieved text fitted" not in report                      # (finetune mode retrieves into no prompt)
    assert "mean over t = 0..0 / t = 1..1 |" in report
    assert all(np.isfinite(losses).all() for losses in rec["finetune_losses"])
    assert sorted(p.name for p in (whole / "state").iterdir()) == ["step-0001"]
    # the models moved: step 1's answers differ from the context run's (other prompts, other weights)
    assert llm_web.read_step(context_run, 1)[0]["responses"] != rec["responses"]


def test_analyse_recomputes_outputs_without_generating(context_run, tmp_path, monkeypatch, capsys):
    from collapse_jax.results import RunFolder

    copy = tmp_path / "copy"
    shutil.copytree(context_run, copy, ignore=shutil.ignore_patterns("base", "*.png", "summary.json", "report.md",
                                                                        "arrays.*", "manifest.json"))
    saved = RunFolder.save_figure
    figures = {}
    monkeypatch.setattr(RunFolder, "save_figure", lambda self, fig, name: figures.setdefault(name, fig) and
                        saved(self, fig, name))
    capsys.readouterr()
    from collapse_jax import progress

    progress.set_enabled(True)   # (the analysis showed no bar: a minute without a word; a user trial, 2026-12-07)
    try:
        assert llm_web_cli.main(["--analyse", str(copy)]) == 0
    finally:
        progress.set_enabled(None)
    # its printed summary is strict JSON, NaN as null, as the run's own (it printed NaN; a user trial, 2026-12-07)
    printed, err = capsys.readouterr()
    assert "llm-web analysis (GMM band, proxies B = 1.." in err and "100%" in err.splitlines()[-1]
    shown = json.loads(printed[:printed.rindex("}") + 1], parse_constant=lambda c: pytest.fail(f"printed {c}"))
    assert set(shown) == {"dnorm_t0", "dnorm_tT", "dnorm_ratio", "gmm_coverage", "proxy_coverage", "mean_fitted"}
    # whole-number step ticks (at T = 3 they read 0.5, 1.5, ...; a user trial, 2026-12-06)
    for ax in figures["dnorm.png"].axes + figures["spread.png"].axes:
        assert all(float(x).is_integer() for x in ax.get_xticks()), ax.get_xticks()
    # steps below the noise floor are drawn apart, as no estimate (a figure trial, 2026-12-06: drawn as measured 0s)
    arrays = np.load(copy / "arrays.npz")
    below = ~(arrays["dnorm"] > arrays["dnorm_floor"])
    lines = {line.get_label(): line for line in figures["dnorm.png"].axes[1].get_lines()}
    np.testing.assert_array_equal(lines["floor-corrected sqrt(||D||^2 - floor^2)"].get_xdata(), np.flatnonzero(~below))
    opened = [line for label, line in lines.items() if label.startswith("... below the floor at")]
    assert len(opened) == below.any() and all(list(line.get_xdata()) == list(np.flatnonzero(below)) for line in opened)
    a = json.loads((context_run / "summary.json").read_text())
    b = json.loads((copy / "summary.json").read_text())
    a.pop("step_seconds"), b.pop("step_seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    for name in ARTEFACTS:
        assert (copy / name).is_file(), name


@pytest.mark.parametrize("change, match", [
    (dict(beta=0.0), "beta"), (dict(beta=1.5), "beta"), (dict(mode="rag"), "mode"), (dict(num_models=1), "num_models"),
    (dict(samples=0), "samples"), (dict(num_steps=-1), "num_steps"), (dict(hf=("/no/such/model",) * 3), "/no/such"),
    (dict(hf=("/tmp",)), "one model folder per model"), (dict(proxy_components=13), "proxy_components"),
    (dict(max_new_tokens=192), "max_new_tokens"), (dict(top_p=0.0), "top_p"), (dict(model_heads=3), "model_dim"),
    (dict(encoder="/no/such/encoder"), "encoder"), (dict(query=" "), "query"), (dict(seed=-1), "seed"),
    # a third audit (2026-12-04): NaN noise floors at samples = 1; --hf-dtype and model-less --hf folders refused
    # only after the encoder had embedded the human texts
    (dict(samples=1), "samples must be an integer >= 2"), (dict(hf_dtype="foo"), "hf_dtype must be one of"),
    # a user trial (2026-12-05): samples = 0 read ">= 1"; proxy_dims beyond the answers' PCA was cut silently
    (dict(samples=0), "samples must be an integer >= 2"),
    (dict(proxy_dims=12), "proxy_dims must be at most num_models \\* samples - 1 = 11"),
    (dict(hf=("/tmp",) * 3), "hf path '/tmp' is not a saved model folder: missing config.json"),
    # a user trial (2026-12-05): a folder without modules.json was refused only once the run folder was written
    # (which then refused the corrected command as another configuration); a file read "does not exist"
    (dict(encoder="/tmp"), "encoder '/tmp' is not a saved model folder: missing modules.json; save one with "
                           "SentenceTransformer.save"),
    (dict(encoder=__file__), "encoder must be a local model folder .* which is not a directory"),
    # a user trial (2026-12-04): with byte tokens a query too long for the context is known before any training
    (dict(model_context=16, max_new_tokens=4), "query: it alone takes 28 byte tokens, more than the 12"),
    # a user trial (2026-12-06): 10**30 was taken, then hung or failed in XLA after minutes, a folder written
    (dict(model_dim=10**30), "model_layers, model_dim, .* too large: .* for its float32 weights"),
    (dict(train_batch=10**12), "too large: .* for training on batches of 1,000,000,000,000 windows"),
    (dict(train_steps=10**30), "train_steps must be at most 2,147,483,647"),
    (dict(finetune_steps=2**31), "finetune_steps must be at most 2,147,483,647"),
    # a user trial (2026-12-06): float16 fine-tuning made every weight NaN, its message blaming the learning rate
    (dict(hf_dtype="float16", mode="finetune"), "hf_dtype float16 cannot be fine-tuned"),
])
def test_bad_configuration_is_refused_before_any_compute(change, match):
    with pytest.raises(ValueError, match=match):
        llm_web.WebConfig(**{**TINY, **change})


def test_an_out_that_cannot_be_used_is_refused_before_the_corpus(tmp_path, monkeypatch):
    """A user trial (2026-12-06): --out /proc/x, a file, or a folder of other files was refused only after the
    corpus was read (minutes)."""
    def slow(*_):
        raise AssertionError("the corpus was read first")

    monkeypatch.setattr(llm_web, "human_internet", slow)
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.md").write_text("mine")
    for out, match in ((tmp_path / "file", "a file of that name is in the way"),
                       ("/proc/collapse-jax-x", "cannot create folders in '/proc'"),
                       (tmp_path / "other", "is not empty and holds no llm-web run")):
        with pytest.raises(ValueError, match=match):
            llm_web.run(llm_web.WebConfig(**TINY), out)


def test_bad_runs_and_cli_errors(context_run, tmp_path, capsys):
    with pytest.raises(ValueError, match="another configuration"):
        llm_web.run(llm_web.WebConfig(**{**TINY, "beta": 0.25}), context_run)
    with pytest.raises(ValueError, match="no llm-web run"):
        llm_web.resume(tmp_path)
    with pytest.raises(ValueError, match="no config.json"):
        llm_web_cli.cmd_llm_web(llm_web_cli_args("--analyse", str(tmp_path)))
    assert llm_web_cli.main(["--beta", "2"]) == 2
    assert "beta must lie in (0.0, 1.0]" in capsys.readouterr().err
    assert llm_web_cli.main(["--seed", "-1"]) == 2  # the shared --seed flag named too (it read "seed must ...")
    assert "--seed must be an integer in [0, 2**63 - 1]" in capsys.readouterr().err
    assert llm_web_cli.main(["--resume"]) == 2
    # a user trial (2026-12-05): --samples 1e9 started training; now refused before the folder is made
    assert llm_web_cli.main(["--samples", "1000000000", "--out", str(tmp_path / "huge")]) == 2
    assert "--num-steps, --num-models, --samples, --gmm-replicates" in capsys.readouterr().err
    assert not (tmp_path / "huge").exists()
    assert llm_web_cli.main(["--resume", "--out", str(context_run), "--beta", "0.3"]) == 2
    assert "drop --beta" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_human must be at most"):
        llm_web.human_internet(llm_web.WebConfig(**{**TINY, "num_human": 10**5}))
    # a user trial (2026-12-04): an --out folder holding other files was written into (--help says it is refused);
    # a topic no sentence has read as "num_human must be at most 0" and left an empty --out folder behind
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty and holds no llm-web run"):
        llm_web.run(llm_web.WebConfig(**TINY), other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="topic: no standard-library sentence .* 'zzqqxx'"):
        llm_web.run(llm_web.WebConfig(**{**TINY, "topic": "zzqqxx"}), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    # a user trial (2026-12-05): more base nanoGPTs than the corpus has paragraph pairs failed after the folder and
    # the human texts' embeddings, naming no option ("the training text must hold at least 2 documents")
    many = llm_web.WebConfig(**{**TINY, "num_models": 500})
    with pytest.raises(ValueError, match=r"num_models must be at most \d+ without --hf: each base nanoGPT"):
        llm_web.run(many, tmp_path / "many")
    assert not (tmp_path / "many").exists()
    with pytest.raises(ValueError, match=r"num_models must be an integer >= 2 .*got 0"):
        llm_web.WebConfig(**{**TINY, "num_models": 0})


def test_a_copied_base_of_other_settings_is_refused(context_run, tmp_path):
    """A third audit (2026-12-04): a base/ folder copied from a run with other sizes was used as it was, while the
    report named this run's sizes."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(context_run / llm_web.BASE, other / llm_web.BASE)
    cfg = llm_web.WebConfig(**{**TINY, "model_dim": 64, "train_steps": 30})
    with pytest.raises(ValueError, match=r"holds a base model trained otherwise .*spec.dim: 32 \(this run: 64\)"):
        llm_web.base_generators(cfg, other)
    assert len(llm_web.base_generators(llm_web.WebConfig(**TINY), other)) == 3  # its own settings: reused


def llm_web_cli_args(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    llm_web_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["llm-web", *argv])


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        llm_web_cli.main(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(llm_web.WebConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for opt in ("--preset", "--out", "--resume", "--until", "--analyse"):
        assert opt in text
    from collapse_jax import cli

    with pytest.raises(SystemExit):
        cli.main(["llm-web", "--help"])
    assert "--x64                 no effect" in capsys.readouterr().out  # float32 models, float64 analysis anyway
    paper = llm_web_cli.config_from_args(llm_web_cli_args("--preset", "paper"))
    assert (paper.num_models, paper.samples, paper.beta, paper.num_steps) == (3, 40, 0.5, 60)


# --- the calibrated GMM proxy ---------------------------------------------------------------------------------


def test_shared_gmm_fit_recovers_weights_of_separated_components():
    rng = np.random.default_rng(0)
    means = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    truth = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    pts = np.stack([means[rng.choice(3, 400, p=w)] + rng.normal(size=(400, 2)) for w in truth])
    fit = proxy.fit_shared_gmm(pts, 3, seed=1)
    order = [int(np.argmin(np.sum((fit.means - m) ** 2, axis=1))) for m in means]
    np.testing.assert_allclose(fit.weights[:, order], truth, atol=0.06)
    np.testing.assert_allclose(fit.cov, np.eye(2), atol=0.2)
    np.testing.assert_allclose(proxy.fit_weights(pts[1], fit.means, fit.cov)[order], truth[1], atol=0.06)
    proj = proxy.pca_basis(pts.reshape(-1, 2), 1)
    assert proj.basis.shape == (2, 1) and 0.5 < proj.explained[0] <= 1.0
    # a user trial (2026-12-06): 0 iterations gave uniform weights and a log-likelihood of -inf, a NaN ridge NaN
    # weights, ridge 0 a bare LinAlgError, seed 1.5 a SeedSequence TypeError; fit_weights broadcast mismatched shapes
    for kwargs, message in [(dict(iterations=0), "iterations must be an integer >= 1"),
                            (dict(ridge=float("nan")), "ridge must lie in"), (dict(ridge=0.0), "ridge must lie in"),
                            (dict(tol=-1.0), "tol must lie in"), (dict(seed=1.5), "seed must be an integer")]:
        with pytest.raises(ValueError, match=message):
            proxy.fit_shared_gmm(pts, 3, **kwargs)
    with pytest.raises(ValueError, match=r"means must have shape \(\?, 2\)"):
        proxy.fit_weights(pts[1], fit.means[:, :1], fit.cov)
    with pytest.raises(ValueError, match="cov must be symmetric"):
        proxy.fit_weights(pts[1], fit.means, np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="high must be >= low = 0.9, got 0.1"):
        proxy.band(np.ones((3, 4)), low=0.9, high=0.1)


def test_fixed_start_gmm_network_starts_from_the_given_weights():
    w0 = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    cfg = gmm_network.paper_config(4, num_steps=5, num_human=4)
    a = proxy.simulate_fixed_start(cfg, w0, 8, seed=3)
    assert a.shape == (8, 6, 3, 2)
    np.testing.assert_allclose(a[:, 0], np.broadcast_to(w0, (8, 3, 2)), atol=1e-12)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(a, proxy.simulate_fixed_start(cfg, w0, 8, seed=3))
    assert not np.array_equal(a, proxy.simulate_fixed_start(cfg, w0, 8, seed=4))
    d = proxy.mean_dnorm(a, np.array([[-5.0], [5.0]]))
    np.testing.assert_allclose(d[:, 0], 10 * np.sqrt(2 * (0.7**2 + 0.3**2 + 0.4**2)))
    with pytest.raises(ValueError, match=r"initial_weights\[1\]"):
        proxy.simulate_fixed_start(cfg, [[0.5, 0.5], [0.6, 0.6], [1.0, 0.0]], 2)
    with pytest.raises(ValueError, match="initial_weights"):
        gmm_network.make_config(initial_weights=[[1.0, 0.0]])
    # both kernels start from gmm_network.initial, which takes the given weights and still draws the human points
    import jax

    fixed = cfg.replace(initial_weights=w0)
    w, human, _ = gmm_network.initial(jax.random.key(0), gmm_network.make_params(fixed), fixed)
    np.testing.assert_allclose(np.asarray(w), w0, rtol=1e-6)
    assert human.shape == (4, 1) and np.all(np.isfinite(np.asarray(human)))


@pytest.mark.parametrize("num_human", [1, 3])
def test_analysis_runs_where_one_human_text_or_none_is_retrieved_at_t0(num_human):
    # an audit (2026-12-04): floor(beta |A(0)|) = 1 made the one-component proxy's default c_t = 1 / k_t invalid, and
    # the analysis failed after every step had run (resume and --analyse failed the same way)
    from llm_bridge import llm_web_report

    cfg = llm_web.WebConfig(**{**TINY, "num_human": num_human, "proxy_components": 3, "gmm_replicates": 20})
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(cfg.num_steps + 1, cfg.num_models, cfg.samples, 8))
    out = llm_web_report.calibrated_proxies(cfg, emb, rng.normal(size=(num_human, 8)))
    assert np.isnan(out["coverage"][0]) and np.all(np.isnan(out["median"][0]))  # B = 1: n/a, as always
    assert np.all(np.isfinite(out["coverage"][1:])) and np.all(np.isfinite(out["median"][1:]))
    reads = np.floor(cfg.beta * (num_human + cfg.num_models * np.arange(cfg.num_steps + 1))).astype(int)
    band = llm_web_report.gmm_band(cfg, reads)
    assert np.all(np.isfinite(band["median"]))


def test_the_gmm_band_reads_what_the_llms_read_and_starts_after_reading():
    """An audit (2026-12-07): the band's models read floor(beta |A(t)|) points (10-55 at the defaults) where the
    LLMs fitted 3-4 texts into their prompts, and its t = 0 was the Dirichlet start, where the LLMs' t = 0 comes
    after reading A(0). The band follows the reads given, one record on: models that read nothing never move."""
    from llm_bridge import llm_web_report

    cfg = llm_web.WebConfig(**{**TINY, "gmm_replicates": 200})
    band = llm_web_report.gmm_band(cfg, np.zeros(cfg.num_steps + 1, int))
    assert band["curves"].shape == (200, cfg.num_steps + 1) and np.all(band["curves"] == 1.0)
    # curves[:, t] is Pi(t + 1), after step t's reading: nothing read at t = 1, one point at t = 2 and 3
    # (a replicate whose models all moved onto one component at t = 0 has D = 0 there: NaN, left out of the band)
    few = llm_web_report.gmm_band(cfg, np.r_[2, 0, 2, 2])["curves"]
    few = few[np.isfinite(few[:, 0])]
    assert len(few) > 100 and np.all(few[:, 1] == 1.0) and not np.all(few[:, 2] == 1.0)
    for bad in (30, [4], [[1, 2], [3, 4]], [1, -1], [1.5, 2], ["a", "b"]):  # (30: an old call, a one-step band)
        with pytest.raises(ValueError, match="reads must"):
            llm_web_report.gmm_band(cfg, bad)
    # the proxy's first step reads nothing: its start is already the models after reading A(0)
    gcfg = gmm_network.make_config(num_steps=cfg.num_steps + 1, num_human=cfg.num_human, beta=cfg.beta)
    assert list(llm_web_report._aligned_params(gcfg, [3, 2, 4, 1], first_reads=False).num_draws) == [0, 2, 4, 1]
    records = [{"fitted": [3, 4, 4], "k": 9}, {"fitted": [0, 1, 0], "k": 10}]
    assert list(llm_web_report.llm_reads(cfg, records)) == [4, 0]
    finetune = llm_web.WebConfig(**{**TINY, "mode": "finetune"})
    assert list(llm_web_report.llm_reads(finetune, records)) == [9, 10]


def test_a_run_below_its_floor_at_t0_says_why_the_band_coverage_is_na():
    from llm_bridge import llm_web_report

    cfg = llm_web.WebConfig(**{**TINY, "samples": 8, "gmm_replicates": 200})
    said = llm_web_report.report_caveats(cfg, {"steps_above_floor": 3, "signal_t0": 0.0}, 20)
    assert said == ["‖D(0)‖_F is at or below its sampling-noise floor, so the floor-corrected curve has no t = 0 "
                    "value to divide by: the GMM band's coverage is n/a (the raw curve's is given beside it)"]
    assert llm_web_report.report_caveats(cfg, {"steps_above_floor": 3, "signal_t0": 0.1}, 20) == []


def test_the_gmm_network_takes_other_reads_per_step():
    cfg = gmm_network.make_config(num_steps=4, num_human=6, beta=0.5)
    default = gmm_network.make_params(cfg)
    same = gmm_network.make_params(cfg, num_draws=default.num_draws)
    assert all(np.array_equal(a, b) for a, b in zip(default, same))
    given = gmm_network.make_params(cfg, num_draws=[0, 1, 2, 3])
    assert list(given.num_draws) == [0, 1, 2, 3] and np.allclose(given.alpha[1:], [1, 1 / 2, 1 / 3])
    for bad, message in (([1, 2, 3], r"one k_t per step t = 0..T-1 \(4 values\)"),
                         ([0, 1, 2, 1000], r"integers k_t in \[0, \|A\(t\)\|\].*1000 at t = 3"),
                         ([0, -1, 2, 3], "-1 at t = 1"), ([0, 1.5, 2, 3], "1.5 at t = 1")):
        with pytest.raises(ValueError, match=message):
            gmm_network.make_params(cfg, num_draws=bad)
    one = gmm_network.make_config(mu=((0.0,),), sigma=((1.0,),), num_steps=3, num_human=10, beta=0.5)
    with pytest.raises(ValueError, match=r"k_t = num_draws\[1\] = 1: give more draws"):  # (not floor(beta |A|))
        gmm_network.make_params(one, num_draws=[2, 1, 2])


def test_the_proxy_is_measured_like_the_llms():
    """An audit (2026-12-07): the proxy's X_i was its mixture's mean, without the sampling noise of the L answers
    that gives the LLM curve its floor. X_i is now the mean of L draws: E ||D||_F^2 = ||D_pop||_F^2 + 2 (n - 1)
    sum_i v_i / L, v_i the trace of model i's covariance (the mixture's: the shared one plus the means' spread)."""
    means, cov = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 2.0]]), np.array([[1.0, 0.3], [0.3, 0.5]])
    w = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]])
    L, R = 5, 40_000
    d2 = proxy.sampled_dnorm(np.broadcast_to(w, (R, 3, 3)), means, cov, L, seed=2) ** 2
    m = w @ means
    v = np.trace(cov) + np.einsum("ib,ib->i", w, ((means[None] - m[:, None]) ** 2).sum(-1))
    exact = proxy.mean_dnorm(w, means) ** 2 + 2 * 2 * v.sum() / L
    assert abs(d2.mean() - exact) < 4 * d2.std() / np.sqrt(R)
    assert np.array_equal(proxy.sampled_dnorm(w, means, cov, L, seed=3), proxy.sampled_dnorm(w, means, cov, L, seed=3))
    assert d2.dtype == np.float64


def test_a_proxy_whose_models_start_alike_has_a_finite_band():
    """An audit (2026-12-07): when EM gave every model nearly the same weights, the proxy's ||D(0)|| was about 0
    and its normalised band ran from 96 to 898 ("proxy median at T = 413"). Measured with the answers' sampling
    noise, its t = 0 value is that noise, as the LLM curve's is."""
    from llm_bridge import llm_web_report

    cfg = llm_web.WebConfig(**{**TINY, "num_steps": 6, "gmm_replicates": 100})
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(cfg.num_steps + 1, cfg.num_models, cfg.samples, 8))
    emb[0] = emb[0, :1] + 1e-4 * emb[0]  # every model's t = 0 answers nearly the same points: nearly equal weights
    out = llm_web_report.calibrated_proxies(cfg, emb, rng.normal(size=(cfg.num_human, 8)))
    assert np.all(out["high"][1] < 10) and np.all(out["median"][1] > 0.1)


def test_coverage_and_normalisation():
    curve = np.array([2.0, 1.0, 0.5, 0.2])
    assert list(proxy.normalised(curve)) == [1.0, 0.5, 0.25, 0.1]
    assert proxy.coverage(proxy.normalised(curve), np.full(4, 0.2), np.full(4, 0.6)) == pytest.approx(2 / 3)
    assert np.isnan(proxy.coverage(curve, np.full(4, np.nan), np.ones(4)))
    # a curve normalised by 0 at t = 0 (floor-corrected below its floor there) is undefined, not 0 % inside
    assert np.isnan(proxy.coverage(proxy.normalised(np.r_[0.0, curve]), np.zeros(5), np.ones(5)))
    assert np.all(np.isnan(proxy.normalised(np.zeros((2, 3)))))


def test_noise_floor_is_the_expected_dnorm_of_identical_models():
    from llm_bridge.llm_web_report import noise_floor

    rng = np.random.default_rng(0)
    scale = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    e = rng.normal(size=(4000, 3, 8, 5)) * scale                  # 4000 networks of 3 identical models, L = 8
    x = e.mean(axis=2)
    d2 = np.sum((x[:, :, None] - x[:, None]) ** 2, axis=(-3, -2, -1))
    exact = 2 * 2 * 3 * np.sum(scale**2) / 8                      # 2 (n - 1) sum_i tr(Cov) / L
    np.testing.assert_allclose(d2.mean(), exact, rtol=0.05)
    np.testing.assert_allclose((noise_floor(e) ** 2).mean(), exact, rtol=0.03)


# --- Hugging Face causal LMs from local folders ---------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """Two tiny random GPT-2s (different init seeds, so different priors) sharing a 300-token BPE, saved locally."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from llm_bridge import corpus as cp

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(cp.stdlib_corpus(cp.CorpusConfig(docstrings=False)).texts[:200], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                               eos_token="<|endoftext|>")
    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = transformers.GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        folder = tmp_path_factory.mktemp(f"gpt2-{seed}")
        transformers.GPT2LMHeadModel(config).save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        folders.append(str(folder))
    return tuple(folders)


def test_hf_models_run_in_both_modes_and_finetune_resumes(hf_folders, tmp_path):
    base = dict(hf=hf_folders, num_models=2, samples=3, num_steps=1, num_human=4, max_new_tokens=12,
                corpus_docstrings=False, gmm_replicates=20, proxy_dims=2, proxy_components=2)
    ctx = llm_web.run(llm_web.WebConfig(**base), tmp_path / "ctx", analyse_after=False)
    rec, emb = llm_web.read_step(ctx, 1)
    assert emb.shape == (2, 3, 384) and rec["models"][0].startswith("hf:")
    assert all(p + 12 <= 128 for p in rec["prompt_tokens"]) and max(rec["fitted"]) >= 1
    assert not (ctx / "base").exists()                          # nothing trained: the folders are the models
    cfg = llm_web.WebConfig(**base, mode="finetune", finetune_steps=2, finetune_batch=2)
    whole = llm_web.run(cfg, tmp_path / "whole", analyse_after=False)
    part = llm_web.run(cfg, tmp_path / "part", until=1)
    assert (part / "state" / "step-0000" / "model-1" / "config.json").is_file()
    llm_web.run(cfg, part, analyse_after=False)
    _assert_same_steps(whole, part, 2)
    assert all(len(losses) == 2 for losses in llm_web.read_step(whole, 1)[0]["finetune_losses"])


def test_resume_refuses_model_folders_that_changed_and_stores_absolute_paths(hf_folders, tmp_path, monkeypatch):
    """A user trial (2026-12-05): a run resumed after its model folder was rewritten made its later steps with
    another model than its first, silently; and a run started with relative folder names could not be resumed from
    another working directory (or found another folder of that name)."""
    copy = tmp_path / "models" / "lm-1"
    shutil.copytree(hf_folders[1], copy)
    monkeypatch.chdir(tmp_path / "models")
    cfg = llm_web.WebConfig(hf=(hf_folders[0], "lm-1"), num_models=2, samples=2, num_steps=1, num_human=4,
                            max_new_tokens=8, corpus_docstrings=False, gmm_replicates=10, proxy_dims=1,
                            proxy_components=2)
    assert cfg.hf[1] == str(copy)
    run = llm_web.run(cfg, tmp_path / "run", until=1)
    saved = json.loads((run / llm_web.MODELS_FILE).read_text())
    assert set(saved) == {"hf[0]", "hf[1]", "encoder"} and saved["hf[1]"]["path"] == str(copy)
    monkeypatch.chdir(tmp_path)
    (copy / "generation_config.json").write_text("{}")           # the folder's files change
    with pytest.raises(ValueError, match=r"--hf \(folder 2\): the model folder .*lm-1' holds other files than"):
        llm_web.resume(run)
    assert llm_web.completed_steps(run) == 1


def test_a_folder_that_is_no_causal_lm_is_refused_before_the_run_folder(hf_folders, tmp_path):
    """A user trial: an encoder folder given as --hf embedded the human texts and wrote the run folder before failing
    with "lack 6 of the model's tensors", which did not say the folder was no causal LM."""
    import transformers

    bert = tmp_path / "bert"
    transformers.BertModel(transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(bert)
    for f in Path(hf_folders[0]).iterdir():
        if "token" in f.name:
            shutil.copy(f, bert)
    cfg = llm_web.WebConfig(hf=(hf_folders[0], str(bert)), num_models=2, samples=2, num_steps=1, num_human=4,
                            max_new_tokens=8, corpus_docstrings=False, gmm_replicates=10, proxy_dims=1,
                            proxy_components=2)
    with pytest.raises(ValueError, match="lack .* of the causal LM's tensors .*or not a causal LM .*BertModel"):
        llm_web.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_query_too_long_for_an_hf_context_is_refused_before_the_run_folder(hf_folders, tmp_path):
    """A user trial (2026-12-06): --max-new-tokens 40 with a 32-token context loaded the models, embedded the human
    texts and wrote the run folder before "more than the -8 that --max-new-tokens = 40 leaves"; the corrected command
    was then refused in that folder. Checked for every --hf model before anything is written."""
    base = dict(hf=hf_folders, num_models=2, samples=2, num_steps=1, num_human=4, corpus_docstrings=False,
                gmm_replicates=10, proxy_dims=1, proxy_components=2)
    with pytest.raises(ValueError, match=r"max_new_tokens must be less than hf:.*'s context \(128 tokens\), .*got 130"):
        llm_web.run(llm_web.WebConfig(**base, max_new_tokens=130), tmp_path / "run")
    with pytest.raises(ValueError, match=r"the query alone takes \d+ tokens, more than the 3 that"):
        llm_web.run(llm_web.WebConfig(**base, max_new_tokens=125), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_answers_drop_replacement_characters():
    """A user trial (2026-12-06): a byte-level model's text cut inside a multi-byte character decoded to U+FFFD,
    which was posted to the internet the next step reads and embedded (14 of 15 posts of a byte-token run)."""
    cfg = llm_web.WebConfig(**TINY)
    text = llm_web.answer(cfg, " is caught by \ufffd\ufffdthe handler\ufffd. And more")
    assert "\ufffd" not in text
    assert text == llm_web.answer(cfg, " is caught by the handler. And more")


def test_analyse_refuses_other_options_and_other_runs(tmp_path, capsys):
    """A user trial (2026-12-06): --analyse RUN --out X ignored --out (and --preset) without a word, and a
    gmm-network run folder as RUN said only "unknown configuration fields [...]"."""
    from collapse_jax import cli
    from collapse_jax.results import RunFolder

    other = RunFolder.create("g", tmp_path / "gmm")
    other.write_config({"command": "gmm-network", "replicates": 5})
    for extra, named in ((["--out", str(tmp_path / "x")], "--out"), (["--preset", "paper"], "--preset"),
                         (["--seed", "3"], "--seed")):
        assert cli.main(["llm-web", "--analyse", str(tmp_path / "gmm"), *extra]) == 2
        err = capsys.readouterr().err
        assert f"--analyse RUN takes no other options (it rewrites RUN's outputs in RUN): drop {named}" in err, err
    assert cli.main(["llm-web", "--analyse", str(tmp_path / "gmm")]) == 2
    assert "holds a gmm-network run's configuration, not an llm-web run's" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_diverged_finetune_names_the_configs_learning_rate():
    """A user trial (2026-12-07): llm-web --finetune-lr 1e6 stopped with "... lower learning_rate", the generator's
    argument, where every other message names the flag typed (the command line maps finetune_lr to it)."""
    from llm_bridge.generators import check_finite_loss

    class Diverging:
        name = "tiny"

        def finetune(self, texts, *, learning_rate, **kwargs):
            check_finite_loss(float("nan"), 1, learning_rate, [7.5])

    cfg = llm_web.WebConfig(**{**TINY, "mode": "finetune", "finetune_lr": 1e6})
    with pytest.raises(ValueError, match=r"^model 0 \(tiny\) at t = 1: fine-tuning diverged: .* the model is "
                                         r"unchanged: lower finetune_lr \(got 1e\+06\)$") as info:
        llm_web.run_step(cfg, 1, [Diverging()], ["a text", "another"], encoder=None)
    from collapse_jax import cli_options
    from collapse_jax.cli import build_parser

    shown = cli_options.with_flags(str(info.value), build_parser().parse_args(["llm-web"]))
    assert shown.endswith("lower --finetune-lr (got 1e+06)"), shown


def test_the_proxy_components_default_fits_small_runs():
    """A user trial (2026-12-07): the default of 8 refused every run with n L < 8 (--samples 2 with two models)."""
    small = {k: v for k, v in TINY.items() if k != "proxy_components"}
    assert llm_web.WebConfig(**{**small, "num_models": 2, "samples": 2}).proxy_components == 4
    assert llm_web.WebConfig(**small).proxy_components == 8  # n L = 12
    with pytest.raises(ValueError, match=r"proxy_components must be at most num_models \* samples = 4"):
        llm_web.WebConfig(**{**small, "num_models": 2, "samples": 2, "proxy_components": 5})


def test_the_minimum_ratio_leaves_t0_out():
    """A user trial (2026-12-07): "min over t: 1" with every later ratio above 1 (t = 0's is 1 by definition)."""
    from llm_bridge.llm_web_report import min_ratio

    assert min_ratio(np.array([1.0, 1.054, 1.055, 1.027])) == 1.027
    assert min_ratio(np.array([1.0, np.nan, 0.6, 0.9])) == 0.6
    assert np.isnan(min_ratio(np.array([1.0, np.nan])))
