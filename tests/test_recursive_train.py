"""``collapse-jax recursive-train`` end to end on a tiny model and a small real text: artefacts, finite metrics,
Sigma recomputed from the stored embeddings, the theory beside the curves, kill + resume == uninterrupted, bad
input refused before compute."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from collapse_jax import cli_options as opts
from collapse_jax import multinomial
from llm_bridge import nanogpt as ng
from llm_bridge import recursive_train as rt
from llm_bridge import recursive_train_cli as cli
from llm_bridge import synthetic_filter
from llm_bridge.embedding_metrics import sigma_monitor, update_tracks

SETTINGS = ("accumulate", "filtered", "s2-carry")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The language-reference topics (real prose shipped with Python) as a .txt file of paragraphs."""
    from llm_bridge import corpus

    paragraphs = [p for doc in corpus.topic_documents() for p in corpus.paragraphs(doc) if len(p.split()) >= 8]
    path = tmp_path_factory.mktemp("text") / "topics.txt"
    path.write_text("\n\n".join(paragraphs[:400]), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def config(source):
    return rt.RecursiveConfig(settings=SETTINGS, generations=2, repetitions=1, seed=3, source=source, doc_words=30,
                              n0=40, n=40, alpha=0.5, held_out_docs=12, classifier_docs=8, vocab_size=300,
                              num_layers=1, num_heads=2, dim=32, context_length=32, steps=12, batch_size=8,
                              warmup_steps=2, sample_tokens=24, prompts=3, responses=2, prompt_words=3,
                              response_tokens=10)


@pytest.fixture(scope="module")
def finished(config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "full"
    return folder, rt.run(folder, config, progress=False)


def _gen_folders(folder, config):
    yield folder / "rep0" / "gen00"
    for s in config.settings:
        for t in range(1, config.generations + 1):
            yield folder / "rep0" / s / f"gen{t:02d}"


def test_artefacts_exist_and_metrics_are_finite(finished, config):
    folder, results = finished
    for name in ("config.json", "results.json", "curves.npz", "recursive_train.png", "theory.png", "manifest.json",
                 "rep0/tokenizer.json", "rep0/classifier_real.npz"):
        assert (folder / name).is_file(), name
    for gen in _gen_folders(folder, config):
        for name in ("train.json", "samples.json", "responses.json", "embeddings.npz", "metrics.json"):
            assert (gen / name).is_file(), gen / name
        assert any(p.name.isdigit() for p in (gen / "checkpoints").iterdir())
        samples = json.loads((gen / "samples.json").read_text())
        assert len(samples) == config.num_samples
    for name in ("held_out_perplexity", "unigram_distance_raw", "training_unigram_distance", "track2_drift",
                 "track1_drift", "distinct_2", "self_bleu_diversity", "semantic_diversity", "train_loss"):
        arr = np.asarray(results["curves"][name], dtype=float)
        assert arr.shape == (len(SETTINGS), 1, config.generations + 1)
        assert np.all(np.isfinite(arr)), name
    assert np.all(np.asarray(results["curves"]["held_out_perplexity"]) > 1.0)
    assert np.all(np.isfinite(np.asarray(results["theory"]["risk"], dtype=float)))
    # every curve described, and the settings as a coordinate (12 of 13 had no description and ds.sel(setting=...)
    # was impossible; a user trial, 2026-12-06)
    import xarray as xr

    assert all(entry["description"] for entry in json.loads((folder / "curves.json").read_text()).values())
    with xr.open_dataset(folder / "curves.nc") as ds:
        assert ds.coords["setting"].values.tolist() == list(SETTINGS)
        np.testing.assert_array_equal(ds.held_out_perplexity.sel(setting=SETTINGS[0]).values,
                                      np.asarray(results["curves"]["held_out_perplexity"])[0])


def test_sigma_recomputed_from_stored_embeddings_equals_the_recorded_drift(finished, config):
    folder, results = finished
    for i, s in enumerate(config.settings):
        gens = [folder / "rep0" / "gen00"] + [folder / "rep0" / s / f"gen{t:02d}" for t in (1, 2)]
        embs = [np.load(g / "embeddings.npz")["embeddings"] for g in gens]
        monitor = sigma_monitor(embs[0].shape[0], embs[0].shape[1], seed=rt.derive_seed(config.seed, 0, "sigma"))
        drifts = []
        for e in embs:
            monitor, record = update_tracks(monitor, e)  # (as the run does)
            drifts.append(record["delta_u_lln"])
        np.testing.assert_allclose(drifts, results["curves"]["track2_drift"][i][0], rtol=1e-10, atol=1e-10)
        assert drifts[0] == 0.0


def test_embeddings_are_of_the_responses_alone(finished, config):
    """Seed 002 App. C embeds the responses; a user trial found prompt + response embedded (a generator answering
    every prompt alike kept semantic diversity 0.52 from the prompts)."""
    folder, _ = finished
    gen = folder / "rep0" / "accumulate" / "gen02"
    responses = [r["text"] for r in json.loads((gen / "responses.json").read_text())]
    stored = np.load(gen / "embeddings.npz")["embeddings"]
    np.testing.assert_allclose(stored, rt.default_encoder().encode(responses, progress=False), atol=1e-5)


def test_training_data_follow_the_setting(finished, config):
    folder, _ = finished
    n0 = json.loads((folder / "rep0/gen00/train.json").read_text())
    assert len(n0["texts"]) == config.n0 and all(n0["real"])
    acc = json.loads((folder / "rep0/accumulate/gen02/metrics.json").read_text())["data"]
    assert acc["training_documents"] == config.n0 + 2 * config.n and acc["real_documents"] == 0
    s2 = json.loads((folder / "rep0/s2-carry/gen01/train.json").read_text())
    prev = json.loads((folder / "rep0/gen00/samples.json").read_text())
    assert s2["texts"] == prev[:config.n] and not any(s2["real"])
    filt = json.loads((folder / "rep0/filtered/gen01/metrics.json").read_text())["data"]
    f = filt["filter"]
    assert filt["fresh"] == round(config.alpha * config.n) and filt["synthetic"] == config.n - filt["fresh"]
    assert f["kept"] == f["kept_real"] + f["kept_synthetic"] == filt["documents"]
    assert 0.0 <= f["type1"] <= 1.0 and 0.0 <= f["type2"] <= 1.0


def test_theory_counts_the_tokens_p_and_f_count(finished, config):
    """An audit (2026-12-04): n_t counted each document's EOT, which p, f_t and q_t leave out (n_t too large by the
    number of documents, the theory's risks 1-5 % low). n_t is now the generation's non-EOT tokens."""
    from llm_bridge import bpe

    folder, results = finished
    tok = bpe.TextTokenizer.load(folder / "rep0")
    for name in config.settings:
        alpha, n = (np.asarray(a) for a in results["theory"]["schedules_alpha_n_tokens"][name][0])
        train = json.loads((folder / "rep0" / name / "gen01" / "train.json").read_text())
        if name == "filtered":  # the candidates before the filter: not stored; the kept ones are fewer
            continue
        ids = tok.encode_batch(train["texts"])
        tokens = [sum(1 for x in i if x != tok.eot_id) for i in ids]
        assert n[1] == sum(tokens)
        assert alpha[1] == pytest.approx(sum(t for t, r in zip(tokens, train["real"]) if r) / sum(tokens))
    gen0 = json.loads((folder / "rep0" / "gen00" / "train.json").read_text())
    n0 = np.asarray(results["theory"]["schedules_alpha_n_tokens"][config.settings[0]][0][1])[0]
    assert n0 == sum(len(i) for i in tok.encode_batch(gen0["texts"]))


def test_theory_is_the_multinomial_recurrence_of_the_token_schedules(finished, config):
    _, results = finished
    s = results["theory"]["s"][0]
    for i, name in enumerate(config.settings):
        alpha, n = (np.asarray(a) for a in results["theory"]["schedules_alpha_n_tokens"][name][0])
        risk = np.asarray(results["theory"]["risk"][i][0])
        assert risk[0] == pytest.approx(s / n[0])
        if name == "accumulate":
            c = (n[0] + n[1] * (1 - alpha[1])) / (n[0] + n[1])
            expected = c ** 2 * risk[0] + n[1] / (n[0] + n[1]) ** 2 * (s - (1 - alpha[1]) ** 2 * risk[0])
            assert risk[1] == pytest.approx(expected)
        if name == "s2-carry":
            assert risk[1] == pytest.approx((1 - 1 / n[1]) * risk[0] + s / n[1])
        if name == "filtered":
            e = results["theory"]["filter_errors"]["filtered"]
            kappa = alpha[1] * (1 - e["type1_mean"]) + (1 - alpha[1]) * e["type2_mean"]
            tilde = alpha[1] * (1 - e["type1_mean"]) / kappa
            inv = multinomial.expected_inverse_kept(n[1], kappa)
            assert risk[1] == pytest.approx((1 - tilde) ** 2 * (1 - inv) * risk[0] + s * inv)


def test_a_generation_folder_loads_as_the_model_that_generation_trained(finished, config, capsys):
    """NanoGPT.load (and so ``nanogpt sample``) takes a generation folder: its perplexity on the repetition's
    held-out documents is the one the run recorded (the folders held no config.json and were refused)."""
    folder, _ = finished
    docs = rt.load_real_documents(config)
    rep = rt.prepare_repetition(config, docs, 0, folder / "rep0", encoder=None)
    for gen in (folder / "rep0" / "gen00", folder / "rep0" / config.settings[-1] / f"gen{config.generations:02d}"):
        model = ng.NanoGPT.load(gen)
        recorded = json.loads((gen / "metrics.json").read_text())["held_out_perplexity"]
        assert model.perplexity(rep.held_out, progress=False).corpus == pytest.approx(recorded, rel=1e-6)
        assert model.context_length == config.context_length and model.tokenizer.vocab_size <= config.vocab_size
    with pytest.raises(ValueError, match="not a finished generation"):
        rt.load_generation_model(folder / "rep0")
    with pytest.raises(ValueError, match="holds no config.json"):
        ng.NanoGPT.load(folder / "rep0")
    # `nanogpt eval` of a generation asks for --texts (it said "holds no config.json; it is not a nanoGPT run" of
    # the folder `nanogpt sample` takes; a user trial, 2026-12-07)
    from collapse_jax import cli as main_cli

    assert main_cli.main(["nanogpt", "eval", str(folder / "rep0" / "gen00")]) == 2
    assert "is a saved model without training data; give --texts" in capsys.readouterr().err


def test_killed_and_resumed_run_equals_the_uninterrupted_one(finished, config, tmp_path):
    folder, results = finished
    part = tmp_path / "part"
    assert rt.run(part, config, until=3, progress=False) is None
    made = [g for g in _gen_folders(part, config) if (g / "metrics.json").is_file()]
    assert len(made) == 3
    # a generation killed halfway: files of its own but no metrics.json
    half = next(g for g in _gen_folders(part, config) if not (g / "metrics.json").is_file())
    shutil.copytree(folder / half.relative_to(part) / "checkpoints", half / "checkpoints")
    (half / "samples.json").write_text("[\"cut off")
    resumed = rt.run(part, config, progress=False)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(results, sort_keys=True)
    for gen in _gen_folders(folder, config):
        twin = part / gen.relative_to(folder)
        for name in ("train.json", "samples.json", "responses.json", "metrics.json"):
            assert (gen / name).read_text() == (twin / name).read_text(), twin / name
        np.testing.assert_array_equal(np.load(gen / "embeddings.npz")["embeddings"],
                                      np.load(twin / "embeddings.npz")["embeddings"])


def test_a_folder_with_another_configuration_is_refused(finished, config):
    folder, _ = finished
    with pytest.raises(ValueError, match="another configuration.*steps"):
        rt.run(folder, rt.RecursiveConfig(**{**config.__dict__, "steps": 13}), progress=False)


@pytest.mark.parametrize("overrides, match", [
    (dict(settings=("nope",)), "settings"),
    (dict(settings=()), "settings"),
    (dict(settings=("fixed", "fixed")), "settings"),
    (dict(generations=0), "generations"),
    (dict(alpha=1.5), "alpha"),
    (dict(sample_tokens=64), "sample_tokens"),
    (dict(classifier_docs=2), "classifier_docs"),
    (dict(prompts=20, held_out_docs=12), "prompts"),
    (dict(dim=30, num_heads=4), "dim"),
    (dict(vocab_size=100), "vocab_size"),
    (dict(n_growth="cubic"), "n_growth"),
    (dict(source="/no/such/file.txt"), "/no/such/file.txt"),
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=1e39), r"temperature must lie in \(0, 3.40.*\] \(the largest float32"),  # (refused at sampling)
])
def test_bad_configuration_is_refused(config, overrides, match):
    with pytest.raises(ValueError, match=match):
        rt.RecursiveConfig(**{**config.__dict__, **overrides})


def test_too_little_text_is_refused_before_any_folder_is_made(config, tmp_path):
    big = rt.RecursiveConfig(**{**config.__dict__, "n0": 5000})
    with pytest.raises(ValueError, match="documents"):
        rt.run(tmp_path / "never", big)
    assert not (tmp_path / "never").exists()


def test_classifier_documents_are_set_aside_only_when_a_setting_filters(config, tmp_path):
    unfiltered = rt.RecursiveConfig(**{**config.__dict__, "settings": ("accumulate", "s2-carry")})
    pool = lambda c: max(int(c.fresh_counts(s).sum()) for s in c.settings)  # noqa: E731
    assert unfiltered.documents_needed() == config.held_out_docs + pool(unfiltered)
    assert config.documents_needed() == config.held_out_docs + config.classifier_docs + pool(config)
    docs = [f"document number {i} with a few words" for i in range(unfiltered.documents_needed())]
    rep = rt.prepare_repetition(unfiltered, docs, 0, tmp_path / "rep", encoder=None)
    assert rep.classifier_real == [] and len(rep.pool) == len(docs) - config.held_out_docs
    # a run folder begun when the classifier's documents were set aside regardless is refused, not mixed
    from collapse_jax.results import RunFolder
    old = RunFolder.create("recursive-train", tmp_path / "old")
    old.write_config(unfiltered.__dict__)
    with pytest.raises(ValueError, match="classifier_docs_reserved"):
        rt.run(old.path, unfiltered)


def test_schedules_follow_seed_003_settings():
    cfg = rt.RecursiveConfig(generations=3, n0=10, n=20, alpha=0.5, gamma=1.0, n_growth="linear")
    np.testing.assert_array_equal(cfg.sizes(), [10, 20, 40, 60])
    np.testing.assert_array_equal(cfg.fresh_counts("synthetic"), [10, 0, 0, 0])
    np.testing.assert_array_equal(cfg.fresh_counts("fixed"), [10, 10, 20, 30])
    np.testing.assert_array_equal(cfg.fresh_counts("decaying"), [10, 10, 10, 10])   # 0.5/t of 20 t
    assert rt.derive_seed(0, 1, "a") == rt.derive_seed(0, 1, "a") != rt.derive_seed(0, 2, "a")


def test_classifier_separates_shifted_clouds_and_measures_its_errors():
    rng = np.random.default_rng(0)
    real, syn = rng.normal(0.0, 1.0, (200, 5)), rng.normal(0.0, 1.0, (200, 5)) + np.array([2.0, 0, 0, 0, 0])
    clf = synthetic_filter.fit(real[:100], syn[:100], ridge=1.0)
    a, b = synthetic_filter.error_rates(clf, real[100:], syn[100:])
    # Bayes errors for a shift of 2 along one axis: Phi(-1) = 0.159 each
    assert a == pytest.approx(0.159, abs=0.08) and b == pytest.approx(0.159, abs=0.08)
    assert clf.weights[0] < 0 and abs(clf.weights[1:]).max() < abs(clf.weights[0])
    with pytest.raises(ValueError, match="ridge"):
        synthetic_filter.fit(real, syn, ridge=0.0)
    with pytest.raises(ValueError, match="synthetic"):
        synthetic_filter.fit(real, syn[:, :3])
    for tol in (-1.0, float("nan")):  # (a NaN warned "stopped ... before reaching tol = nan"; a user trial)
        with pytest.raises(ValueError, match="tol must lie in"):
            synthetic_filter.fit(real, syn, tol=tol)


def test_classifier_fits_that_fail_say_so():
    """A user trial (2026-12-05): a fit stopped by max_iter, or one that overflowed into NaN weights (which classify
    nothing), came back as any other; an empty held-out set gave a NaN error rate."""
    import warnings

    rng = np.random.default_rng(0)
    real, syn = rng.normal(3.0, 0.1, (50, 2)), rng.normal(-3.0, 0.1, (50, 2))
    with pytest.warns(RuntimeWarning, match="stopped at max_iter = 3 Newton steps"):
        synthetic_filter.fit(real, syn, ridge=1e-12, max_iter=3)
    with pytest.raises(ValueError, match="the classifier's fit overflowed .*scale real and synthetic down"):
        synthetic_filter.fit(real * 1e200, syn * 1e200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = synthetic_filter.fit(real, syn)                       # converges: no warning
    with pytest.raises(ValueError, match="real must hold at least one held-out embedding"):
        synthetic_filter.error_rates(clf, real[:0], syn)
    assert synthetic_filter.error_rates(clf, real, syn) == (0.0, 0.0)


def test_cli_help_lists_every_parameter_and_bad_input_returns_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for f in rt.RecursiveConfig.__dataclass_fields__:
        assert opts.flag_of(rt.RecursiveConfig, f) in out, f
    assert cli.main(["--alpha", "2", "--out", "/tmp/never-made"]) == 2
    assert "alpha" in capsys.readouterr().err
    # run as a module, the flag was not named as under collapse-jax ("seed must ...", 2026-12-05)
    assert cli.main(["--seed", "-1", "--out", "/tmp/never-made"]) == 2
    assert "--seed must be an integer in [0, 2**63 - 1]" in capsys.readouterr().err


def test_presets_are_valid_and_the_command_is_registered():
    import tomllib

    gpu = rt.preset("gpu")
    assert (gpu.num_layers, gpu.num_heads, gpu.dim, gpu.context_length, gpu.batch_size) == (4, 4, 256, 128, 32)
    assert rt.preset("cpu") == rt.RecursiveConfig()
    with pytest.raises(ValueError, match="preset"):
        rt.preset("tpu")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    commands = pyproject["project"]["entry-points"]["collapse_jax.commands"]
    assert commands["recursive-train"] == "llm_bridge.recursive_train_cli"


def _cli_args(config, out):
    args = []
    for name, value in config.__dict__.items():
        args += [opts.flag_of(rt.RecursiveConfig, name), ",".join(value) if name == "settings" else str(value)]
    return [sys.executable, "-m", "llm_bridge.recursive_train_cli", *args, "--out", str(out)]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_rerun_gives_the_uninterrupted_files(config, tmp_path):
    """Two command-line runs (no x64, as users run it): one uninterrupted, one killed with SIGKILL partway through
    a generation and rerun; every JSON and array file must match."""
    env = {**os.environ, "COLLAPSE_JAX_PROGRESS": "0", "PYTHONPATH": str(Path(__file__).parents[1])}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cli_args(config, whole), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_cli_args(config, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list(killed.rglob("metrics.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.7)                                     # into the next generation's training or writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    subprocess.run(_cli_args(config, killed), env=env, check=True, capture_output=True)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.suffix in (".json", ".npz")
                   and p.name not in ("config.json", "manifest.json") and "checkpoints" not in p.parts)
    assert len(files) > 20
    for rel in files:
        if rel.suffix == ".npz":
            a, b = np.load(whole / rel), np.load(killed / rel)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=str(rel))
        else:
            assert (whole / rel).read_text() == (killed / rel).read_text(), rel


def test_documents_drop_what_does_not_decode():
    """A third audit (2026-12-04): samples cut inside a multi-byte character were decoded with U+FFFD, which the next
    generation trained on as three tokens the model never produced."""
    from llm_bridge.bpe import byte_tokenizer

    tok = byte_tokenizer()
    ids = tok.encode_batch(["a\u00e9b"])[0]
    assert "\ufffd" in tok.decode(ids[:2])  # 'a' and the first byte of the two-byte character
    assert rt.document_text(tok, ids[:2]) == "a" and rt.document_text(tok, ids) == "a\u00e9b"

