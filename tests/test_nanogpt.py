"""llm_bridge.nanogpt / nanogpt_train / nanogpt_cli: the architecture against a NumPy reference, the key/value cache,
batched generation, sampling filters, perplexity against a hand loop, fine-tuning, and training with checkpoints:
interrupted-and-resumed runs (in process, and a subprocess killed with SIGKILL) end bitwise equal to an
uninterrupted run; a corrupt newest checkpoint is reported and the previous one used.

Everything runs on a ``tiny`` model (2 layers, 2 heads, 32-d, context 32) trained for a few steps on generated text.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
import time
from dataclasses import asdict, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collapse_jax import cli_options as opts
from llm_bridge import nanogpt_cli
from llm_bridge import nanogpt as ng
from llm_bridge import nanogpt_train as nt
from llm_bridge.bpe import byte_tokenizer
from llm_bridge.generators import Generator, Sampling

import nanogpt_reference as ref

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the cat dog bird sat ran flew on under over a mat log tree house and then quickly slowly big small red "
         "green").split()
STEPS = 16
SPEC = nt.ModelSpec(preset="tiny", dropout=0.1)


def _text(seed: int, docs: int = 240) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(docs):
        n = int(rng.integers(6, 30))
        out.append(" ".join(WORDS[int(i)] for i in rng.zipf(1.6, n) % len(WORDS)) + ".")
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    (d / "a.txt").write_text(_text(0))
    (d / "sub").mkdir()
    (d / "sub" / "b.txt").write_text(_text(1, 60))
    return d


def _configs(data_dir, **train):
    data = nt.DataConfig(source=str(data_dir), tokenizer="bpe", vocab_size=300)
    kw = dict(steps=STEPS, batch_size=4, warmup_steps=4, eval_every=8, eval_windows=8, checkpoint_every=4,
              learning_rate=3e-3, seed=3)
    kw.update(train)
    return data, nt.TrainConfig(**kw)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir):
    """An uninterrupted run of STEPS steps (dropout 0.1, so the dropout keys matter too)."""
    folder = tmp_path_factory.mktemp("runs") / "full"
    data, tc = _configs(data_dir)
    return nt.train(folder, SPEC, data, tc, progress=False)


@pytest.fixture(scope="module")
def model(reference_run):
    return ng.NanoGPT.load(reference_run.folder)


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def _assert_params_equal(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and np.array_equal(x, y)


# ----------------------------------------------------------------------------------------------------------------
# Configuration and architecture
# ----------------------------------------------------------------------------------------------------------------


def test_config_validation_and_presets():
    cfg = ng.preset_config("seed003", 4096)
    assert (cfg.num_layers, cfg.num_heads, cfg.dim, cfg.context_length) == (4, 4, 256, 128)
    params = nnx.eval_shape(lambda: ng.init_params(cfg))
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == cfg.num_params()
    assert ng.preset_config("tiny", 300, dim=64).dim == 64
    with pytest.raises(ValueError, match=r"dim \(30\) must be a multiple of num_heads \(4\)"):
        ng.GPTConfig(100, 16, 1, 4, 30)
    with pytest.raises(ValueError, match="dropout must lie in"):
        ng.GPTConfig(100, 16, 1, 2, 32, dropout=1.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        ng.GPTConfig(100, 16, 1, 2, 32, dtype="float16")
    with pytest.raises(ValueError, match="num_layers must be an integer >= 1"):
        ng.GPTConfig(100, 16, 0, 2, 32)
    with pytest.raises(ValueError, match="preset must be one of"):
        ng.preset_config("huge", 100)


def test_init_scales_and_tied_embedding():
    cfg = ng.GPTConfig(vocab_size=300, context_length=64, num_layers=2, num_heads=2, dim=64)
    p = nnx.to_pure_dict(nnx.split(ng.init_model(cfg, seed=1))[1])
    assert "lm_head" not in p and set(p) == {"wte", "wpe", "blocks", "ln_f"}
    std = lambda a: float(np.std(np.asarray(a)))  # noqa: E731
    assert abs(std(p["wte"]["embedding"]) - 0.02) < 0.002
    assert abs(std(p["blocks"][0]["attn"]["qkv"]["kernel"]) - 0.02) < 0.002
    resid = 0.02 / math.sqrt(2 * cfg.num_layers)
    assert abs(std(p["blocks"][1]["attn"]["out"]["kernel"]) - resid) < 0.1 * resid
    assert abs(std(p["blocks"][1]["mlp"]["proj"]["kernel"]) - resid) < 0.1 * resid
    assert not np.any(np.asarray(p["blocks"][0]["mlp"]["fc"]["bias"]))
    assert np.all(np.asarray(p["ln_f"]["scale"]) == 1.0)
    # same seed, same weights; another seed, other weights
    again = nnx.split(ng.init_model(cfg, seed=1))[1]
    _assert_params_equal(nnx.split(ng.init_model(cfg, seed=1))[1], again)
    other = nnx.to_pure_dict(nnx.split(ng.init_model(cfg, seed=2))[1])
    assert not np.array_equal(np.asarray(other["wte"]["embedding"]), np.asarray(p["wte"]["embedding"]))


def test_forward_matches_numpy_reference(model):
    tokens = np.asarray([model.tokenizer.eot_id] + model.tokenizer.encode("the cat sat on the big red mat"))
    got, _ = ng.forward_jit(model.graphdef, model.params, jnp.asarray(tokens[None], jnp.int32))
    want = ref.logits(nnx.to_pure_dict(model.params), tokens, model.config.num_heads)
    np.testing.assert_allclose(np.asarray(got[0]), want, atol=2e-4, rtol=1e-4)


def test_bfloat16_compute_is_close_to_float32(model):
    cfg16 = ng.GPTConfig(**{**asdict(model.config), "dtype": "bfloat16"})
    m16 = ng.NanoGPT(cfg16, model.tokenizer, model.params)
    tokens = jnp.asarray([[0] + model.tokenizer.encode("a dog ran under the tree")], jnp.int32)
    l32, _ = ng.forward_jit(model.graphdef, model.params, tokens)
    l16, _ = ng.forward_jit(m16.graphdef, m16.params, tokens)
    assert l16.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(l16 - l32))) < 0.05 * float(jnp.max(jnp.abs(l32)))


def test_cache_logits_equal_full_recompute(model):
    """Prefill 5 tokens into the cache, then feed one token at a time: the logits equal one full forward."""
    cfg = model.config
    tokens = jnp.asarray([[0] + model.tokenizer.encode("the big dog ran over the log and then")], jnp.int32)
    t = tokens.shape[1]
    full, _ = ng.forward_jit(model.graphdef, model.params, tokens)
    causal = jnp.tril(jnp.ones((t, t), bool))
    pos = jnp.arange(t, dtype=jnp.int32)[None]
    logits, cache = ng.forward_jit(model.graphdef, model.params, tokens[:, :5], pos[:, :5], causal[None, :5],
                               ng.empty_cache(cfg, 1, t), 0)
    steps = [logits]
    for i in range(5, t):
        logits, cache = ng.forward_jit(model.graphdef, model.params, tokens[:, i:i + 1], pos[:, i:i + 1],
                                   causal[None, i:i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, axis=1)), np.asarray(full), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------------

PROMPTS = ["the cat", "a big red dog ran quickly under the tree", "", "bird"]


def test_is_a_generator(model):
    assert isinstance(model, Generator) and model.context_length == 32


def test_cached_generation_equals_uncached(model):
    for sampling in (Sampling(max_new_tokens=12, temperature=0.9), Sampling(max_new_tokens=12, top_k=1)):
        cached = model.generate_ids(PROMPTS, sampling, seed=5)
        uncached = model.generate_ids(PROMPTS, sampling, seed=5, use_cache=False)
        assert cached == uncached
    assert any(len(r) > 3 for r in cached)


def test_mixed_length_batch_equals_each_prompt_alone(model):
    for sampling in (Sampling(max_new_tokens=12, top_k=1), Sampling(max_new_tokens=12, temperature=1.0)):
        together = model.generate_ids(PROMPTS, sampling, seed=2, batch_size=4)
        alone = [model.generate_ids([p], sampling, seed=2)[0] for p in PROMPTS]
        # prompt i draws with fold_in(key(seed), i) wherever it runs: give each lone prompt its own index
        alone_keyed = [model.generate_ids([""] * i + [p], sampling, seed=2, batch_size=1)[i]
                       for i, p in enumerate(PROMPTS)]
        assert together == alone_keyed
        if sampling.top_k == 1:
            assert together == alone


def _last_logits(model, seq: list[int]) -> np.ndarray:
    """Next-token logits after ``seq``: one causal forward pass from position 0 (right-padded to the context, which
    the causal mask hides, so that one compilation serves every length)."""
    padded = np.zeros((1, model.context_length), np.int32)
    padded[0, :len(seq)] = seq
    logits, _ = ng.forward_jit(model.graphdef, model.params, jnp.asarray(padded))
    return np.asarray(logits[0, len(seq) - 1], np.float64)


def _hand_greedy(model, seq: list[int], n: int) -> list[int]:
    """Greedy decoding by full forward passes over the growing sequence, stopped at EOT."""
    seq, out = list(seq), []
    for _ in range(n):
        nxt = int(np.argmax(_last_logits(model, seq)))
        if nxt == model.tokenizer.eot_id:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


def test_top_k_1_equals_hand_greedy_loop(model):
    prompt = "the dog sat on"
    want = _hand_greedy(model, [model.tokenizer.eot_id] + model.tokenizer.encode(prompt), 12)
    assert model.generate_ids([prompt], Sampling(max_new_tokens=12, top_k=1), seed=9)[0] == want


def test_generation_is_deterministic_per_seed(model):
    s = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=50)
    a = model.generate(PROMPTS, s, seed=11)
    assert a == model.generate(PROMPTS, s, seed=11)
    assert a != model.generate(PROMPTS, s, seed=12)
    assert all(isinstance(t, str) for t in a)


def test_filter_logits_top_k_top_p_on_a_hand_built_distribution():
    probs = np.asarray([0.05, 0.5, 0.15, 0.3])          # descending: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
    logits = jnp.asarray(np.log(probs)[None])
    kept = lambda **kw: set(np.flatnonzero(np.isfinite(np.asarray(ng.filter_logits(logits, **kw)[0]))))  # noqa
    assert kept(top_p=0.5) == {1}
    assert kept(top_p=0.51) == {1, 3}
    assert kept(top_p=0.8) == {1, 3}
    assert kept(top_p=0.81) == {1, 3, 2}
    assert kept(top_p=1.0) == {0, 1, 2, 3}
    assert kept(top_k=2) == {1, 3}
    assert kept(top_k=3, top_p=0.6) == {1, 3}
    # sampling draws only from the kept set, in proportion to the renormalised probabilities
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = np.asarray(ng.sample_tokens(jnp.repeat(logits, 4000, 0), keys, 1.0, None, 0.8))
    assert set(np.unique(draws)) == {1, 3}
    assert abs(np.mean(draws == 1) - 0.5 / 0.8) < 0.03


@pytest.mark.parametrize("vocab, top_k", [  # ((1000, 300) has the padded groups too; (1000, None) in the slow tier)
    (64, None), pytest.param(1000, None, marks=pytest.mark.slow), (1000, 300)])
def test_sampled_tokens_follow_the_tempered_softmax(vocab, top_k):
    # groups of race_group_size tokens (1000: 32 groups of 32, the last padded), top-k zeroing whole groups
    from scipy import stats

    logits = jax.random.normal(jax.random.key(3), (1, vocab)) * 2.0
    n = 100_000
    keys = jax.random.split(jax.random.key(4), n)
    draw = jax.jit(lambda l, k, t: ng.sample_tokens(l, k, t, top_k, 1.0))
    for temperature in (0.7, 1.0, 2.5) if top_k is None else (1.0,):
        draws = np.asarray(draw(jnp.repeat(logits, n, 0), keys, temperature))
        z = np.asarray(logits[0], np.float64) / temperature
        if top_k is not None:
            z = np.where(z >= np.sort(z)[-top_k], z, -np.inf)
        p = np.asarray(jax.nn.softmax(z))
        counts = np.bincount(draws, minlength=vocab)
        assert counts[p == 0].sum() == 0
        big = p * n >= 5                                   # pool the cells too small for chi-square
        small = (p > 0) & ~big
        observed, expected = counts[big], p[big] * n
        if small.any():
            observed, expected = np.append(observed, counts[small].sum()), np.append(expected, p[small].sum() * n)
        assert stats.chisquare(observed, expected).pvalue > 1e-3, temperature


def test_race_exponentials_resolve_small_values():
    # the race draws token k of probability p when its E_k is about p times the others' minimum: a rare token's rate
    # rests on how finely the small E are resolved (float32 uniforms have 23 random bits: the E below 1e-5 came
    # from a grid of 84 values, and a token of probability 5e-8 after a large one was never drawn; an audit,
    # 2026-12-04)
    e = np.asarray(jax.jit(jax.vmap(lambda k: ng.race_exponentials(k, 4096)))(
        jax.random.split(jax.random.key(6), 4096)), np.float64)
    small = e[e < 1e-5]
    assert 110 <= small.size <= 230                  # 16.8 M draws: Poisson(168)
    assert np.unique(small).size >= small.size - 3   # no grid: distinct but for birthday repeats of r < 43,000
    assert e.min() > 0 and np.isfinite(e).all() and e.max() < 23
    assert abs(e.mean() - 1) < 5e-3 and abs(e.var() - 1) < 1e-2
    # the top of r: 1 - v from the complemented bits, never 0 (it was for the top 128 values of 2^32: E = inf)
    top = jnp.asarray([2**32 - 1, 2**32 - 128, 2**32 - 129, 2**31, 2**31 - 1, 0], jnp.uint32)
    with jax.enable_x64(False):
        got = np.asarray(jax.jit(lambda k: ng.race_exponentials(k, 6))(jax.random.key(0)))
    assert np.isfinite(got).all()
    import unittest.mock as mock
    with mock.patch.object(jax.random, "bits", lambda key, shape, dtype: top):
        e_top = np.asarray(ng.race_exponentials(jax.random.key(0), 6), np.float64)
    want = -np.log1p(-(np.asarray(top, np.float64) + 0.5) * 2.0 ** -32)
    np.testing.assert_allclose(e_top, want, rtol=1e-6)


def test_a_dominant_group_never_loses_its_race_to_an_infinite_exponential():
    # an audit (2026-12-04) found this key: the dominant group's E was inf (v rounded to 1), so a token of
    # probability 1e-8 was drawn; such losses added ~3e-8 to the tail at each race level
    z = np.full(64, -np.inf, np.float32)
    z[0], z[1], z[32] = 0.0, np.log(1e-8), np.log(1e-8)
    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(12345), 3), 887030)
    assert int(ng.sample_tokens(jnp.asarray(z)[None], k[None], 1.0, None, 1.0)[0]) == 0


def test_nan_logits_count_as_minus_infinity():
    # a NaN made the row's maximum NaN and every weight 1: a uniform draw over the whole vocabulary, masked ids too
    logits = np.full(40, -np.inf, np.float32)
    logits[:30] = np.random.default_rng(0).normal(size=30)
    logits[0], logits[3] = 5.0, np.nan
    n = 5000
    draws = np.asarray(ng.sample_tokens(jnp.repeat(jnp.asarray(logits)[None], n, 0),
                                        jax.random.split(jax.random.key(1), n), 1.0, None, 1.0))
    assert draws.max() < 30 and not np.any(draws == 3)
    w = np.exp(np.where(np.isfinite(logits), logits, -np.inf).astype(np.float64) - 5.0)
    assert abs(np.mean(draws == 0) - 1 / w.sum()) < 0.03
    assert int(ng.sample_tokens(jnp.asarray(logits)[None], jax.random.split(jax.random.key(2), 1), 1.0, 1, 1.0)[0]) == 0


def test_a_temperature_beyond_float32_is_refused_and_the_largest_draws_every_token(capsys):
    # an audit (2026-12-07): the sampler divides in float32, where 1e39 is inf; a masked logit's -inf / inf was NaN,
    # which spoilt its group's sum, and that group of 32 tokens was never drawn (0 EOTs in 5,140 uniform draws)
    from llm_bridge.generators import MAX_TEMPERATURE

    for t in (1e39, float(np.nextafter(MAX_TEMPERATURE, np.inf))):
        with pytest.raises(ValueError, match=r"temperature must lie in \(0, 3.4028234663852886e\+38\] \(the largest "
                                             r"float32"):
            Sampling(temperature=t)
    assert _cli("sample", "no-such-run", "--temperature", "1e39") == 2   # refused before the run is read
    assert "--temperature must lie in (0, 3.4028234663852886e+38] (the largest float32" in capsys.readouterr().err
    # the largest temperature left: a uniform draw over the unmasked ids, EOT's group too (a constant temperature
    # above 2^126 was applied as a multiplication by 1 / temperature, flushed to 0: -inf * 0 = NaN, EOT never drawn)
    logits = np.zeros(300, np.float32)
    logits[257:] = -np.inf                                   # the rows beyond a byte tokenizer's 257 ids
    n = 2570
    draws = np.asarray(ng.sample_tokens(jnp.repeat(jnp.asarray(logits)[None], n, 0),
                                        jax.random.split(jax.random.key(5), n), MAX_TEMPERATURE, None, 1.0))
    assert draws.max() == 256 and 2 <= np.sum(draws == 256) <= 25          # Poisson(10)
    assert np.sum(draws >= 224) > 100                                       # EOT's group of 32 (0 at inf)


def test_eot_ends_a_row_and_stop_string_cuts(model):
    p = nnx.to_pure_dict(model.params)
    eot = model.tokenizer.eot_id
    wte = np.asarray(p["wte"]["embedding"]).copy()
    wte[eot] *= 20.0
    p["wte"]["embedding"] = wte
    p["ln_f"]["scale"] = np.zeros_like(p["ln_f"]["scale"])
    p["ln_f"]["bias"] = 100 * wte[eot] / np.linalg.norm(wte[eot])   # logits = 100 wte @ e_eot: EOT ~ certain
    params = jax.tree.map(jnp.copy, model.params)
    nnx.replace_by_pure_dict(params, p)
    eager = ng.NanoGPT(model.config, model.tokenizer, params)
    assert np.argmax(_last_logits(eager, [eot])) == eot
    assert eager.generate_ids(PROMPTS, Sampling(max_new_tokens=12, top_k=1)) == [[]] * len(PROMPTS)
    assert eager.generate(PROMPTS, Sampling(max_new_tokens=12, temperature=0.5), seed=3) == [""] * len(PROMPTS)
    texts = model.generate(PROMPTS, Sampling(max_new_tokens=12, temperature=1.0), seed=1)
    cut = model.generate(PROMPTS, Sampling(max_new_tokens=12, temperature=1.0, stop=" "), seed=1)
    assert cut == [t.split(" ")[0] for t in texts]


def test_long_prompts_are_cut_with_a_warning(model):
    long = " ".join(["the cat sat on the mat"] * 20)
    with pytest.warns(UserWarning, match="1 of 2 prompts are longer") as record:
        out = model.generate_ids([long, "a"], Sampling(max_new_tokens=8, top_k=1), seed=0)
    assert record[0].filename == __file__                              # the caller's line, not the library's
    with pytest.warns(UserWarning, match="1 of 2 prompts are longer") as record:
        model.generate([long, "a"], Sampling(max_new_tokens=8, top_k=1), seed=0)
    assert record[0].filename == __file__
    kept = ([model.tokenizer.eot_id] + model.tokenizer.encode(long))[-(32 - 8):]     # the last 24 tokens
    assert out[0] == _hand_greedy(model, kept, 8)


def test_generate_bad_input(model):
    with pytest.raises(ValueError, match="prompts must be a sequence of strings"):
        model.generate("the cat")
    with pytest.raises(ValueError, match=r"prompts\[1\] must be a str"):
        model.generate(["a", None])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        model.generate(["a"], batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens must be at most context_length - 1 = 31"):
        model.generate(["a"], Sampling(max_new_tokens=32))
    # (taken, every token kept; a user trial, 2026-12-07): only the tokenizer's ids are drawn, so a top_k between
    # the tokenizer's size and the padded vocab_size kept every drawable token too (a review, 2026-12-07)
    v = model.config.vocab_size
    with pytest.raises(ValueError, match=f"top_k must be at most the vocabulary size {v:,} of this model .*got "
                                         f"{v + 1:,}"):
        model.generate(["a"], Sampling(max_new_tokens=2, top_k=v + 1))
    padded = ng.NanoGPT.create(ng.GPTConfig(v + 20, 32, 1, 2, 16), model.tokenizer)
    with pytest.raises(ValueError, match=f"top_k must be at most the vocabulary size {v:,} of this model's "
                                         f"tokenizer .*got {v + 1:,}"):
        padded.generate(["a"], Sampling(max_new_tokens=2, top_k=v + 1))
    with pytest.raises(ValueError, match="top_p must lie in"):
        Sampling(top_p=0.0)
    with pytest.raises(ValueError, match="stop cannot be encoded as UTF-8.*lone surrogate"):
        Sampling(stop="a\ud800")        # never matched by the nanoGPT, a UnicodeEncodeError inside the HF adapter
    for field, value in (("temperature", True), ("temperature", "0.5"), ("top_p", True), ("top_p", "1")):
        with pytest.raises(ValueError, match=f"{field} must be a number"):   # float() would have taken them
            Sampling(**{field: value})
    with pytest.raises(ValueError, match="prompts must hold at least one text"):
        model.generate([], Sampling(max_new_tokens=4))
    with pytest.raises(ValueError, match="texts must hold at least one text"):
        model.perplexity([])
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
        model.generate(["a"], seed=-1)
    # a lone surrogate is refused by name (it failed inside tokenizers with an unnamed TypeError)
    with pytest.raises(ValueError, match=r"prompts\[1\] cannot be encoded as UTF-8"):
        model.generate(["a", "ab\ud800"], Sampling(max_new_tokens=4))
    with pytest.raises(ValueError, match=r"texts\[0\] cannot be encoded as UTF-8"):
        model.perplexity(["\udfffx"])
    with pytest.raises(ValueError, match=r"prompts\[0\] cannot be encoded as UTF-8"):  # (a TypeError; a user trial)
        model.encode_prompts(["\ud800"])
    # a temperature that is 0 in float32 samples the argmax (it gave NaN probabilities: empty texts)
    greedy = model.generate(["the", "a"], Sampling(max_new_tokens=8, top_k=1))
    assert model.generate(["the", "a"], Sampling(max_new_tokens=8, temperature=1e-46)) == greedy
    assert model.generate(["the", "a"], Sampling(max_new_tokens=8, temperature=1e-30)) == greedy


# ----------------------------------------------------------------------------------------------------------------
# Perplexity
# ----------------------------------------------------------------------------------------------------------------


def _hand_nll(model, text: str, stride: int) -> float:
    """Token by token: token i is predicted from the tokens of its window, [k stride, i), k as in score_windows."""
    seq = [model.tokenizer.eot_id] + model.tokenizer.encode(text)
    c, total = model.context_length, 0.0
    for i in range(1, len(seq)):
        k = max(0, math.ceil((i - c) / stride))
        logits = _last_logits(model, seq[k * stride:i])
        total -= float(logits[seq[i]] - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max())
    return total


def test_perplexity_matches_hand_loop(model):
    texts = ["the cat sat on the mat.", " ".join(["a big dog ran under the red tree"] * 6), "", "bird"]
    res = model.perplexity(texts, batch_size=3, stride=8)
    assert res.tokens.tolist() == [len(model.tokenizer.encode(t)) for t in texts]
    assert res.tokens[1] > 2 * model.context_length              # the long text needs several windows
    want = [_hand_nll(model, t, 8) for t in texts]
    np.testing.assert_allclose(res.nll, want, rtol=2e-5, atol=1e-4)
    again = model.perplexity(texts, batch_size=1, stride=8)
    np.testing.assert_allclose(again.nll, res.nll, rtol=1e-6)
    # the empty text predicts no token: no perplexity (NaN, it scored 1.0), and the corpus value is that of the
    # other texts' tokens
    assert res.tokens[2] == 0 and np.isnan(res.per_text[2]) and np.isfinite(res.per_text[[0, 1, 3]]).all()
    assert res.corpus == pytest.approx(math.exp(res.nll.sum() / res.tokens.sum()))
    none = model.perplexity(["", ""])
    assert np.isnan(none.per_text).all() and math.isnan(none.corpus)


def test_a_literal_endoftext_in_prompts_and_scored_texts_is_plain_text(model):
    """In prompts and scored texts "<|endoftext|>" is text (its bytes), not the EOT token that ended the prompt."""
    tok, eot = model.tokenizer, model.tokenizer.eot_id
    text = "the cat<|endoftext|>sat"
    assert eot in tok.encode(text)                            # the tokenizer's default: the training streams' rule
    [ids] = model.encode_prompts([text])
    assert ids[0] == eot and eot not in ids[1:] and tok.decode(ids[1:]) == text
    assert model.perplexity([text]).tokens[0] == len(ids) - 1


def test_score_windows_refuse_a_stride_that_never_advances():
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        ng.score_windows(10, 4, 0)
    with pytest.raises(ValueError, match="context must be an integer >= stride = 5"):
        ng.score_windows(10, 4, 5)


def test_model_vocabulary_larger_than_the_tokenizer_draws_only_tokenizer_ids():
    # an audit (2026-12-04): a model with vocab_size 512 and the 257-token byte tokenizer drew ids >= 257 half the
    # time, which decode dropped silently (texts shorter than max_new_tokens)
    tok = byte_tokenizer()
    model = ng.NanoGPT.create(ng.GPTConfig(vocab_size=512, context_length=16, num_layers=1, num_heads=1, dim=8),
                              tok, seed=0)
    for sampling in (Sampling(max_new_tokens=8), Sampling(max_new_tokens=8, top_k=1),
                     Sampling(max_new_tokens=8, top_p=0.5, temperature=3.0)):
        rows = model.generate_ids(["ab", "", "hello"] * 20, sampling, seed=1)
        assert all(0 <= i < tok.vocab_size for row in rows for i in row)
        assert max(map(len, rows)) > 0


def test_encoder_is_the_mean_final_hidden_state(model):
    """NanoGPT.encoder (the model's own embeddings for the Sigma / distance estimators) against the NumPy forward
    pass: the mean over a text's positions, after an EOT, of the final LayerNorm's output; cut to the context."""
    tok, eot, c = model.tokenizer, model.tokenizer.eot_id, model.context_length
    texts = ["the cat sat on the mat.", "", " ".join(["a big dog ran under the red tree"] * 6), "a<|endoftext|>b"]
    enc = model.encoder()
    assert (enc.dim, enc.max_length, enc.normalize) == (model.config.dim, c, False)
    with pytest.warns(UserWarning, match=f"1 of 4 texts are longer than .* max_length of {c} tokens"):
        got = enc.encode(texts, batch_size=3, progress=False)
    params = nnx.to_pure_dict(model.params)
    want = [ref.hidden(params, ([eot] + tok.encode(t, plain=True))[:c], model.config.num_heads).mean(axis=0)
            for t in texts]
    assert got.shape == (4, model.config.dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)
    ln_f = params["ln_f"]   # every embedding on the final LayerNorm's hyperplane (docs/llm_bridge.md)
    np.testing.assert_allclose((got - ln_f["bias"]) @ (1 / ln_f["scale"]), 0, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = enc.encode(texts, batch_size=1, progress=False)   # other padded shapes, the same embeddings
        unit = model.encoder(normalize=True).encode(texts, progress=False)
    np.testing.assert_allclose(one, got, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unit, got / np.linalg.norm(got, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normalize must be True or False"):
        model.encoder(normalize="yes")


def test_encoder_follows_the_model_through_finetuning():
    tok = byte_tokenizer()
    lm = ng.NanoGPT.create(ng.GPTConfig(vocab_size=tok.vocab_size, context_length=16, num_layers=1, num_heads=1,
                                        dim=8), tok, seed=0)
    enc = lm.encoder()
    before = enc.encode(["abc", "hello"], progress=False)
    lm.finetune(["abc abc abc", "hello hello"], steps=3, learning_rate=1e-2, progress=False)
    after = enc.encode(["abc", "hello"], progress=False)
    assert not np.allclose(after, before)
    np.testing.assert_array_equal(after, lm.encoder().encode(["abc", "hello"], progress=False))


def test_perplexity_with_a_one_token_context():
    # the default stride, context // 2, was 0 here and the windows never advanced (perplexity hung)
    tok = byte_tokenizer()
    model = ng.NanoGPT.create(ng.GPTConfig(vocab_size=tok.vocab_size, context_length=1, num_layers=1, num_heads=1,
                                           dim=8), tok, seed=0)
    res = model.perplexity(["abc"])
    assert res.tokens.tolist() == [3]
    np.testing.assert_array_equal(res.nll, model.perplexity(["abc"], stride=1).nll)
    # it cannot sample: said as such, not as "max_new_tokens must be at most 0" (a user trial, 2026-12-06)
    with pytest.raises(ValueError, match="this model's context holds 1 token, the start token alone: it cannot"):
        model.generate(["a"], Sampling(max_new_tokens=1))


def test_score_windows_cover_each_token_once():
    for length in (1, 2, 20, 33, 34, 100):
        for stride in (1, 5, 16, 32):
            scored = [i for _, first, stop in ng.score_windows(length, 32, stride) for i in range(first, stop)]
            assert scored == list(range(1, length))
            for start, first, stop in ng.score_windows(length, 32, stride):
                assert stop - 1 - start <= 32 and first > start


# ----------------------------------------------------------------------------------------------------------------
# Training, checkpoints, resume
# ----------------------------------------------------------------------------------------------------------------


def test_damaged_or_missing_metrics_are_named(reference_run, tmp_path):
    """A third audit (2026-12-04): a missing metrics.json gave a FileNotFoundError traceback, a damaged one "Invalid
    control character", naming no file."""
    copy = tmp_path / "copy"
    shutil.copytree(reference_run.folder, copy)
    (copy / "metrics.json").write_text('{"train": [\x01')
    with pytest.raises(ValueError, match=r"metrics.json' is damaged"):
        nt.resume(copy, progress=False)
    (copy / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"metrics.json' is missing"):
        nt.resume(copy, progress=False)


def test_run_folder_contents(reference_run):
    f = reference_run.folder
    files = {p.name for p in f.iterdir()}
    assert {"config.json", "tokenizer.json", "metrics.json", "loss.png", "manifest.json"} <= files
    assert sorted(int(p.name) for p in (f / "checkpoints").iterdir()) == [STEPS - 4, STEPS]   # keep 2
    metrics = json.loads((f / "metrics.json").read_text())
    assert [r[0] for r in metrics["train"]] == list(range(STEPS))
    assert [r["step"] for r in metrics["eval"]] == [0, 8, 16]
    losses = [r[1] for r in metrics["train"]]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert metrics["eval"][-1]["loss"] < metrics["eval"][0]["loss"]
    saved = json.loads((f / "config.json").read_text())
    assert saved["config"]["model"]["vocab_size"] == reference_run.model.tokenizer.vocab_size
    assert saved["environment"]["jax"] == jax.__version__
    assert reference_run.stopped_by == "steps" and reference_run.step == STEPS
    loaded = ng.NanoGPT.load(f)
    _assert_params_equal(loaded.params, reference_run.model.params)
    assert loaded.step == STEPS


def test_resume_in_process_equals_uninterrupted(tmp_path, data_dir, reference_run, capsys):
    data, tc = _configs(data_dir)
    half = nt.train(tmp_path / "run", SPEC, data, tc, until=STEPS // 2, progress=False)
    assert half.step == STEPS // 2 and half.stopped_by == "until"
    assert not (tmp_path / "run" / "manifest.json").exists()
    capsys.readouterr()
    done = nt.resume(tmp_path / "run", progress=False)
    # said at once (a resume looked like a fresh start until its last line; a user trial, 2026-12-06)
    assert f"resuming {tmp_path / 'run'} from its checkpoint at step {STEPS // 2} of {STEPS}" in capsys.readouterr().err
    assert done.step == STEPS
    _assert_params_equal(done.model.params, reference_run.model.params)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ref_metrics = json.loads((reference_run.folder / "metrics.json").read_text())
    assert metrics["train"] == ref_metrics["train"]


@pytest.mark.parametrize("press, checkpoint_every, stop", [(6, STEPS, 8), (14, 6, STEPS)])
def test_a_first_ctrl_c_checkpoints_the_steps_trained_and_resumes_to_the_same_numbers(tmp_path, data_dir,
                                                                                      reference_run, monkeypatch,
                                                                                      press, checkpoint_every, stop):
    """A user trial (2026-12-07): Ctrl-C at step 96 of 300 (checkpoints every 100) left an empty checkpoints/ and no
    metrics.json, so --resume started again at 0. A first Ctrl-C now lets the running call finish, checkpoints
    there and stops; the resumed run ends with the uninterrupted run's parameters and losses. Also in the last call
    of a run whose length is no multiple of checkpoint_every (its last checkpoint was skipped; a review)."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    data, tc = _configs(data_dir, steps_per_call=2, checkpoint_every=checkpoint_every, eval_every=STEPS)
    call_end = nt._call_end

    def press_during_a_call(step, end, tc_):
        if step == press:
            os.kill(os.getpid(), signal.SIGINT)   # during the call from this step: held, then a stop 2 steps on
        return call_end(step, end, tc_)

    monkeypatch.setattr(nt, "_call_end", press_during_a_call)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            nt.train(tmp_path / "run", SPEC, data, tc, progress=False)
    finally:
        signal.signal(signal.SIGINT, before)
    monkeypatch.setattr(nt, "_call_end", call_end)
    assert max(int(p.name) for p in (tmp_path / "run" / nt.CHECKPOINTS).iterdir() if p.name.isdigit()) == stop
    assert [row[0] for row in json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]] == list(range(stop))
    assert not (tmp_path / "run" / "manifest.json").exists()
    done = nt.resume(tmp_path / "run", progress=False)
    assert done.step == STEPS
    _assert_params_equal(done.model.params, reference_run.model.params)
    ref_metrics = json.loads((reference_run.folder / "metrics.json").read_text())
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"] == ref_metrics["train"]


def test_steps_per_call_does_not_change_the_numbers(tmp_path, data_dir, reference_run):
    # The reference runs 4 steps per call (its checkpoints cut every 4); 3 steps per call (3 + 1 between checkpoints)
    # are other compiled programs and must give the same parameters and losses, bit for bit (one step per call:
    # test_train_steps_is_a_loop_of_train_step).
    ref_metrics = json.loads((reference_run.folder / "metrics.json").read_text())
    for k in (3,):
        data, tc = _configs(data_dir, steps_per_call=k)
        run = nt.train(tmp_path / f"k{k}", SPEC, data, tc, progress=False)
        _assert_params_equal(run.model.params, reference_run.model.params)
        assert json.loads((tmp_path / f"k{k}" / "metrics.json").read_text())["train"] == ref_metrics["train"]


@pytest.mark.parametrize("chunks", [4, 3])
def test_chunked_tied_loss_matches_the_logits_path(chunks):
    # The train step's loss without whole logits (nanogpt.mean_nll_hidden / tied_mean_nll) against mean(token_nll) of
    # the model's logits: value and every parameter gradient, dropout on (same keys); 3 chunks do not divide the
    # 2 x 16 rows, so that call takes one chunk.
    cfg = ng.preset_config("tiny", 64, context_length=16, dropout=0.1)
    graphdef, params = nnx.split(ng.init_model(cfg, 3))
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 17), dtype=np.int32))
    key = jax.random.key(5)

    def via_logits(p):
        logits, _ = ng.forward(graphdef, p, tokens[:, :-1], deterministic=False, dropout_key=key)
        return jnp.mean(ng.token_nll(logits, tokens[:, 1:]))

    def chunked(p):
        return ng.mean_nll_hidden(graphdef, p, tokens[:, :-1], tokens[:, 1:], deterministic=False, dropout_key=key,
                                  chunks=chunks)

    want, want_g = jax.jit(jax.value_and_grad(via_logits))(params)
    got, got_g = jax.jit(jax.value_and_grad(chunked))(params)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    for a, b in zip(_leaves(got_g), _leaves(want_g)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_train_steps_is_a_loop_of_train_step():
    cfg = ng.preset_config("tiny", 64, context_length=16)
    tc = nt.TrainConfig()
    hyper = nt._hyper(tc)
    graphdef, params = nnx.split(ng.init_model(cfg, 0))
    stream = jnp.asarray(np.random.default_rng(0).integers(0, 64, 4000, dtype=np.int32))
    lrs = np.linspace(1e-3, 2e-3, 5).astype(np.float32)
    one, many = nt.train_step(graphdef, hyper, 4, 16), nt.train_steps(graphdef, hyper, 4, 16)
    p, o, losses = nt._copy(params), nt.optimizer(tc).init(params), []
    for s in range(5):
        p, o, loss = one(p, o, stream, 7, 10 + s, lrs[s])
        losses.append(float(loss))
    # on the stream padded to its power-of-two bucket, as training runs it (one compilation fewer than also running
    # the unpadded stream): the same windows, losses and parameters as the loop, bit for bit, and a stream of another
    # length in the same bucket reuses the compilation
    padded, size = nt.padded_stream(np.asarray(stream))
    assert padded.shape == (4096,) and size == 4000
    q, r, got = many(nt._copy(params), nt.optimizer(tc).init(params), padded, 7, 10, jnp.asarray(lrs), size)
    assert np.array_equal(np.asarray(got), np.asarray(losses, np.float32))
    _assert_params_equal(q, p)
    _assert_params_equal(r, o)
    compiled = many._cache_size()
    shorter, shorter_size = nt.padded_stream(np.asarray(stream)[:3000])
    many(nt._copy(params), nt.optimizer(tc).init(params), shorter, 7, 10, jnp.asarray(lrs), shorter_size)
    assert many._cache_size() == compiled


def test_killed_run_resumes_to_the_same_parameters(tmp_path, data_dir, reference_run):
    """A subprocess trains with a checkpoint every 2 steps and is killed with SIGKILL once the first checkpoint is
    on disk; resuming finishes with the uninterrupted run's parameters."""
    data, tc = _configs(data_dir, checkpoint_every=2)
    out = tmp_path / "killed"
    args = ["train", "--preset", "tiny", "--dropout", "0.1", "--data", str(data_dir), "--vocab-size", "300",
            "--steps", str(STEPS), "--batch-size", "4", "--warmup", "4", "--eval-every", "8", "--eval-windows", "8",
            "--checkpoint-every", "2", "--lr", "3e-3", "--seed", "3", "--out", str(out)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", COLLAPSE_JAX_PROGRESS="0", PYTHONPATH=str(ROOT))
    code = "import sys; from llm_bridge import nanogpt_cli; sys.exit(nanogpt_cli.main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if nt.has_checkpoints(out):
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    killed_at = max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert killed_at < STEPS
    done = nt.resume(out, progress=False)
    assert done.step == STEPS
    _assert_params_equal(done.model.params, reference_run.model.params)


# Orbax leaves the reads of the other arrays of a failed restore un-awaited: noise, not a failure (collected here).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_checkpoint_is_reported_and_the_previous_one_used(tmp_path, reference_run):
    run = tmp_path / "run"
    shutil.copytree(reference_run.folder, run)
    latest = run / "checkpoints" / str(STEPS)
    victim = max((p for p in (latest / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    abstract = nnx.eval_shape(lambda: ng.init_params(reference_run.model.config))
    with pytest.raises(nt.CheckpointError, match=str(latest)):
        nt.restore_params(run, abstract, step=STEPS)
    with pytest.warns(UserWarning, match=f"{latest}.*could not be restored"):
        loaded = ng.NanoGPT.load(run)
    assert loaded.step == STEPS - 4
    # resume: warns, sets the bad step aside, replays the last 4 steps to the same parameters
    with pytest.warns(UserWarning) as record:
        done = nt.resume(run, progress=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "could not be restored" in messages and "moved the checkpoint that did not restore" in messages
    assert (run / "checkpoints-corrupt" / str(STEPS)).is_dir()
    _assert_params_equal(done.model.params, reference_run.model.params)
    # the step the resumed run wrote again, damaged again: set aside beside the first copy, not a crash
    victim = max((p for p in (latest / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.warns(UserWarning) as record:
        again = nt.resume(run, progress=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "could not be restored" in messages and "moved the checkpoint that did not restore" in messages
    assert (run / "checkpoints-corrupt" / f"{STEPS}.1").is_dir()
    _assert_params_equal(again.model.params, reference_run.model.params)
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_checkpoint_damaged_in_place_is_caught_by_its_digest(tmp_path, reference_run):
    """Bytes changed in place (the file's size kept) restore without any error from Orbax, with wrong values; the
    SHA-256 saved with each item catches them and the previous step is used."""
    run = tmp_path / "run"
    shutil.copytree(reference_run.folder, run)
    latest = run / "checkpoints" / str(STEPS)
    victim = max((p for p in (latest / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    original = victim.read_bytes()
    abstract = nnx.eval_shape(lambda: ng.init_params(reference_run.model.config))
    # the file holds zstd frames written in an order that varies from run to run: bytes flipped in a frame's header
    # make Orbax itself fail (also a CheckpointError, "could not be restored"); flipped payload bytes restore with
    # no error and wrong values, which only the digest catches. Try places until the latter happens.
    for fraction in (0.5, 0.3, 0.7, 0.4, 0.6, 0.2, 0.8):
        data = bytearray(original)
        middle = int(len(data) * fraction)
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        victim.write_bytes(bytes(data))
        with pytest.raises(nt.CheckpointError) as caught:
            nt.restore_params(run, abstract, step=STEPS)
        if "do not match the SHA-256" in str(caught.value):
            break
    else:
        pytest.fail("no damaged place restored silently: the digest check was never reached")
    with pytest.warns(UserWarning, match=f"{latest}.*params do not match the SHA-256"):
        loaded = ng.NanoGPT.load(run)
    assert loaded.step == STEPS - 4
    assert nt.tree_digest(loaded.params) == nt.tree_digest(ng.NanoGPT.load(reference_run.folder, step=STEPS - 4).params)
    gc.collect()


def test_a_digest_deleted_from_a_checkpoint_marks_it_damaged(tmp_path, reference_run):
    """A step written with a digest (its Orbax metadata names the item) and whose digest/ is gone does not restore
    (it restored unchecked, flipped bytes and all); a step written before digests existed is read as before."""
    run = tmp_path / "run"
    shutil.copytree(reference_run.folder, run)
    latest = run / "checkpoints" / str(STEPS)
    shutil.rmtree(latest / nt.DIGEST)
    with pytest.raises(nt.CheckpointError, match=f"{latest}.*digest/.* is missing"):
        ng.NanoGPT.load(run, step=STEPS)
    with pytest.warns(UserWarning, match=f"{latest}.*is missing"):
        assert ng.NanoGPT.load(run).step == STEPS - 4
    # an older checkpoint: its metadata names no digest item
    meta = json.loads((latest / nt.STEP_METADATA).read_text())
    del meta["item_handlers"][nt.DIGEST]
    (latest / nt.STEP_METADATA).write_text(json.dumps(meta))
    _assert_params_equal(ng.NanoGPT.load(run, step=STEPS).params, reference_run.model.params)
    # none restores: the error says why each step failed (only the warnings did; an audit, 2026-12-07)
    none = tmp_path / "none"
    shutil.copytree(reference_run.folder, none)
    steps = sorted(int(p.name) for p in (none / "checkpoints").iterdir() if p.name.isdigit())
    for s in steps:
        shutil.rmtree(none / "checkpoints" / str(s) / nt.DIGEST)
    with pytest.warns(UserWarning) as warned, pytest.raises(ValueError, match=(
            rf"holds no checkpoint that restores \(steps tried: .*; step {steps[0]}: .*digest/.* is missing")):
        ng.NanoGPT.load(none)
    assert sum("using the previous checkpoint" in str(w.message) for w in warned) == len(steps) - 1


class _Killed(BaseException):
    """Stands for the process dying at that point."""


def test_metrics_hold_every_step_a_checkpoint_has_passed(tmp_path, data_dir, reference_run, monkeypatch):
    """The process dies right after the checkpoint of step 8 is finished: metrics.json must already hold the rows of
    steps 0-7 (it was rewritten after the checkpoint, so the resumed run lacked rows 4-7)."""
    data, tc = _configs(data_dir)
    made = nt.checkpoint_manager

    def dying_manager(folder, keep=None):
        mngr = made(folder, keep)
        save = mngr.save

        def save_then_die(step, *args, **kwargs):
            done = save(step, *args, **kwargs)
            if step == 8:
                raise _Killed
            return done

        mngr.save = save_then_die
        return mngr

    monkeypatch.setattr(nt, "checkpoint_manager", dying_manager)
    with pytest.raises(_Killed):
        nt.train(tmp_path / "run", SPEC, data, tc, progress=False)
    monkeypatch.undo()
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert [r[0] for r in rows] == list(range(8))
    done = nt.resume(tmp_path / "run", progress=False)
    _assert_params_equal(done.model.params, reference_run.model.params)
    ref_metrics = json.loads((reference_run.folder / "metrics.json").read_text())
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"] == ref_metrics["train"]


@pytest.mark.filterwarnings("ignore:the warm-up:UserWarning")
def test_time_budget_stops_and_checkpoints(tmp_path, data_dir):
    data, tc = _configs(data_dir, steps=None, minutes=0.05, eval_every=1000, checkpoint_every=1000)
    result = nt.train(tmp_path / "timed", SPEC, data, tc, progress=False)
    metrics = json.loads((tmp_path / "timed" / "metrics.json").read_text())
    assert result.step >= 1 and metrics["summary"]["total_steps"] >= result.step
    assert result.step in [int(p.name) for p in (tmp_path / "timed" / "checkpoints").iterdir()]
    assert np.isfinite(result.held_out_perplexity)


def test_text_documents_of_a_folder_skip_checkpoints_and_hidden_folders(tmp_path):
    """A user trial (2026-12-07): --data of a folder holding earlier runs read Orbax's commit_success.txt files as
    training documents, and the held-out text was then too short, naming no file."""
    (tmp_path / "a.txt").write_text("Kept text.")
    for sub in ("run/checkpoints/4", ".git", "notes"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "x.txt").write_text(f"From {sub}.")
    with pytest.warns(UserWarning, match=r"2 .txt files inside checkpoints/ or hidden folders are not read"):
        assert nt.text_documents(tmp_path) == ["Kept text.", "From notes."]


def test_text_documents_split_at_lines_of_whitespace_too(tmp_path):
    """A user trial (2026-12-05): only an exact blank line split paragraphs; a line of spaces or Windows line ends
    joined three paragraphs into one document."""
    path = tmp_path / "p.txt"
    path.write_bytes(b"First  paragraph\nhere.\n   \nSecond paragraph here.\r\n\r\nThird.\n\t\n\n")
    assert nt.text_documents(path) == ["First paragraph here.", "Second paragraph here.", "Third."]


def test_time_budget_plan_counts_evaluations_checkpoints_and_compilations(monkeypatch):
    """A user trial (2026-12-05): --minutes alone planned from the steps' time only (and not after its own timing),
    so a 15 s budget planned 1,418 steps and ran 716, its learning rate still at half its peak. The plan on a fake
    clock: compilation 1 s, 1 s a call of 8 steps, evaluations 0.5 s, checkpoints 0.25 s, both every 250 steps,
    100 s left: 760 steps is the longest run that fits (95 s of steps, 4 evaluations and checkpoints, one more call
    length compiled: 99 s; 761 steps would need two more lengths, 100.125 s)."""
    clock = [0.0]
    monkeypatch.setattr(nt.time, "perf_counter", lambda: clock[0])

    class Done:
        def block_until_ready(self):
            return self

    calls = []

    def steps_fn(p, o, *args):
        clock[0] += 2.0 if not calls else 1.0
        calls.append(1)
        return p, o, Done()

    tc = nt.TrainConfig(steps=None, minutes=5.0, steps_per_call=8, eval_every=250, checkpoint_every=250)
    assert nt._call_lengths(760, tc) == {8, 2} and nt._call_lengths(761, tc) == {8, 2, 3}
    total = nt._steps_for_budget(steps_fn, {}, {}, None, 0, tc, lambda: 100.0, 0.5, 0.25)
    assert total == 760


def test_train_bad_input(tmp_path, data_dir, reference_run):
    data, tc = _configs(data_dir)
    with pytest.raises(ValueError, match="already holds a finished run; choose a new folder"):
        nt.train(reference_run.folder, SPEC, data, tc)
    unfinished = tmp_path / "unfinished"  # (both were told "resume it", which runs nothing on a finished run)
    shutil.copytree(reference_run.folder, unfinished)
    (unfinished / "manifest.json").unlink()
    with pytest.raises(ValueError, match="already holds an unfinished run; continue it with resume"):
        nt.train(unfinished, SPEC, data, tc)
    with pytest.raises(ValueError, match="source path '/nonexistent' does not exist"):
        nt.DataConfig(source="/nonexistent")
    (tmp_path / "no-texts").mkdir()  # (named "data path", not the option; an audit, 2026-12-07)
    with pytest.raises(ValueError, match="source path '.*no-texts' is a folder that holds no .txt files"):
        nt.load_documents(nt.DataConfig(source=str(tmp_path / "no-texts")))
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 2"):
        nt.TrainConfig(keep_checkpoints=1)
    with pytest.raises(ValueError, match="give steps, minutes or both"):
        nt.TrainConfig(steps=None)
    with pytest.raises(ValueError, match="steps_per_call"):
        nt.TrainConfig(steps_per_call=0)
    # a user trial (2026-12-06): 10**30 layers or steps were taken, a run folder written, then the run hung
    with pytest.raises(ValueError, match="steps must be at most 2,147,483,647"):
        nt.TrainConfig(steps=10**30)
    with pytest.raises(ValueError, match=r"needs about .* GiB for its float32 weights"):
        ng.GPTConfig(vocab_size=257, context_length=32, num_layers=10**30, num_heads=2, dim=32)
    with pytest.raises(ValueError, match=r"GiB for training on batches of 1,000,000,000,000 windows"):
        nt.train(tmp_path / "huge", SPEC, data, nt.TrainConfig(steps=2, batch_size=10**12))
    assert not (tmp_path / "huge").exists()
    with pytest.raises(ValueError, match="does not exist"):
        ng.NanoGPT.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no config.json"):
        ng.NanoGPT.load(tmp_path / "empty")
    shutil.copy(reference_run.folder / "config.json", tmp_path / "empty")
    shutil.copy(reference_run.folder / "tokenizer.json", tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no checkpoint"):
        ng.NanoGPT.load(tmp_path / "empty")
    assert not (tmp_path / "empty" / "checkpoints").exists()
    (tmp_path / "one.txt").write_text("just one paragraph")
    # the file is named and a document explained (a user trial, 2026-12-06: one 60,000-word line was "got 1")
    with pytest.raises(ValueError, match=r"--data '.*one.txt' must hold at least 2 documents .*got 1: a document is "
                                         r"a paragraph, and paragraphs are separated by blank lines"):
        nt.train(tmp_path / "r", SPEC, nt.DataConfig(source=str(tmp_path / "one.txt"), tokenizer="byte"), tc)
    # a file is not a model folder (it was reported as a folder that does not exist)
    with pytest.raises(ValueError, match="'.*one.txt' is a file, not a model folder"):
        ng.NanoGPT.load(tmp_path / "one.txt")
    # a Hugging Face folder is named as one (it read "not a nanoGPT configuration (KeyError('config'))"; a user
    # trial, 2026-12-07)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ValueError, match=r"model folder '.*hf' holds a Hugging Face model \(gpt2\), not a nanoGPT: "
                                         r"load it with llm_bridge.hf_causal.hf_causal_lm"):
        ng.NanoGPT.load(tmp_path / "hf")


def test_train_refuses_a_folder_of_other_files_before_writing(tmp_path, data_dir, capsys):
    data, tc = _configs(data_dir)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match=f"out: '{other}' is not empty and holds no run .*notes.md"):
        nt.train(other, SPEC, data, tc, progress=False)
    assert [p.name for p in other.iterdir()] == ["notes.md"]
    assert _cli("train", "--preset", "tiny", "--data", str(data_dir), "--steps", "2", "--out", str(other)) == 2
    assert "is not empty and holds no run" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.md"]


@pytest.mark.parametrize("until, match", [(0, "until must be an integer >= 1"), (-3, "until must be an integer >= 1"),
                                          (STEPS + 1, f"until must be an integer from 1 to steps = {STEPS}")])
def test_until_out_of_range_is_refused_before_anything_is_written(tmp_path, data_dir, reference_run, capsys, until,
                                                                   match):
    data, tc = _configs(data_dir)
    with pytest.raises(ValueError, match=match):
        nt.train(tmp_path / "run", SPEC, data, tc, until=until, progress=False)
    with pytest.raises(ValueError, match=match):
        nt.resume(reference_run.folder, until=until, progress=False)
    assert _cli("train", "--preset", "tiny", "--data", str(data_dir), "--vocab-size", "300", "--steps", str(STEPS),
                "--until", str(until), "--out", str(tmp_path / "cli")) == 2
    assert match.replace("to steps", "to --steps") in capsys.readouterr().err  # (the flag, in the formula)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning, saving
# ----------------------------------------------------------------------------------------------------------------


def test_finetune_lowers_the_loss_in_place_and_saves(tmp_path, model, reference_run):
    clone = ng.NanoGPT(model.config, model.tokenizer, model.params, step=model.step)   # shares `model`'s arrays
    texts = ["the red bird flew over the green house."] * 8
    before = clone.perplexity(texts).corpus
    losses = clone.finetune(texts, steps=6, learning_rate=3e-3, batch_size=4, seed=0)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert clone.perplexity(texts).corpus < before
    assert clone.step == model.step + 6
    np.asarray(jax.tree.leaves(model.params)[0])                        # the shared arrays were not donated
    again = ng.NanoGPT(model.config, model.tokenizer, model.params)
    assert again.finetune(texts, steps=6, learning_rate=3e-3, batch_size=4, seed=0) == losses
    shown = ng.NanoGPT(model.config, model.tokenizer, model.params)     # a drawn bar reads each loss: same numbers
    assert shown.finetune(texts, steps=6, learning_rate=3e-3, batch_size=4, seed=0, progress=True) == losses
    clone.save(tmp_path / "ft")
    back = ng.NanoGPT.load(tmp_path / "ft")
    _assert_params_equal(back.params, clone.params)
    assert back.step == clone.step
    with pytest.raises(ValueError, match="holds a training run"):
        clone.save(reference_run.folder)
    (tmp_path / "a_file").write_text("x")  # (pathlib's FileExistsError; a user trial, 2026-12-07)
    with pytest.raises(ValueError, match="is a file; give a folder"):
        clone.save(tmp_path / "a_file")
    with pytest.raises(ValueError, match="a file stands in its path; give a folder"):
        clone.save(tmp_path / "a_file" / "sub")
    (tmp_path / "scripts").mkdir()   # (a folder of other files: written into beside them; a user trial, 2026-12-07)
    (tmp_path / "scripts" / "run.py").write_text("print()")
    with pytest.raises(ValueError, match="holds files but no saved model"):
        clone.save(tmp_path / "scripts")
    assert [p.name for p in (tmp_path / "scripts").iterdir()] == ["run.py"]
    (tmp_path / "finder").mkdir()       # (a folder holding only hidden files is taken, as `nanogpt train --out` does)
    (tmp_path / "finder" / ".DS_Store").write_bytes(b"\0")
    clone.save(tmp_path / "finder")
    _assert_params_equal(ng.NanoGPT.load(tmp_path / "finder").params, clone.params)
    # the same step again, or another model into the folder: refused before anything is written
    before_files = {p: p.read_bytes() for p in (tmp_path / "ft").glob("*.json")}
    with pytest.raises(ValueError, match=f"already holds a checkpoint at step {clone.step}"):
        clone.save(tmp_path / "ft")
    other = ng.NanoGPT.create(dataclasses.replace(clone.config, num_layers=clone.config.num_layers + 1),
                              model.tokenizer, seed=1)
    other.step = clone.step + 1
    with pytest.raises(ValueError, match="another configuration or tokenizer"):
        other.save(tmp_path / "ft")
    assert {p: p.read_bytes() for p in (tmp_path / "ft").glob("*.json")} == before_files
    clone.step += 1
    clone.save(tmp_path / "ft")                                          # a new step of the same model: added
    assert ng.NanoGPT.load(tmp_path / "ft").step == clone.step
    _assert_params_equal(ng.NanoGPT.load(tmp_path / "ft", step=clone.step - 1).params, clone.params)
    with pytest.raises(ValueError, match="texts must hold at least one text"):
        clone.finetune([], steps=1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        clone.finetune(texts, steps=0)


def test_a_folder_that_is_not_a_str_or_path_is_named(model):
    # an audit (2026-12-07): Path(None) raised a bare TypeError ("expected str, bytes or os.PathLike object")
    from llm_bridge.recursive_train import load_generation_model

    for bad, kind in ((None, "NoneType"), (3, "int")):
        for call in (lambda: ng.NanoGPT.load(bad), lambda: model.save(bad), lambda: load_generation_model(bad)):
            with pytest.raises(ValueError, match=rf"folder must be a local model folder \(a str or path\), got {kind}"):
                call()
    with pytest.raises(ValueError, match="folder must be a local model folder, got an empty string"):  # (not ".")
        ng.NanoGPT.load("")


def test_saving_again_keeps_every_earlier_step(tmp_path, model):
    """Three steps saved into one folder all load (Orbax's manager kept only the newest two)."""
    clone = ng.NanoGPT(model.config, model.tokenizer, model.params)
    for step in (1000, 1001, 1002):
        clone.step = step
        clone.save(tmp_path / "saved")
    assert sorted(int(p.name) for p in (tmp_path / "saved" / "checkpoints").iterdir()) == [1000, 1001, 1002]
    for step in (1000, 1001, 1002):
        back = ng.NanoGPT.load(tmp_path / "saved", step=step)
        assert back.step == step
        _assert_params_equal(back.params, model.params)


def test_finetune_takes_every_seed_the_checks_accept(model):
    """The compiled steps take the seed's key (a Python int entered them as an int32: seeds from 2**31 overflowed;
    one step traced root_key's int check for an hour, 2026-12-02), and 2**32 is not seed 0."""
    texts = ["the red bird flew over the green house."] * 4
    runs = {}
    for seed in (0, 2**31, 2**32, 2**63 - 1):
        clone = ng.NanoGPT(model.config, model.tokenizer, model.params)
        runs[seed] = clone.finetune(texts, steps=2, learning_rate=3e-3, batch_size=2, seed=seed)
    assert runs[2**32] != runs[0] and len({tuple(v) for v in runs.values()}) == 4


def test_a_diverging_finetune_leaves_the_model_unchanged(model, monkeypatch):
    """A user trial (2026-12-06) on the Hugging Face adapter: a learning rate far too high gave NaN losses and NaN
    weights without a word. The nanoGPT's update happens at the end, so a diverged run is refused before it."""
    clone = ng.NanoGPT(model.config, model.tokenizer, model.params)
    before = jax.tree.map(np.asarray, clone.params)
    with pytest.raises(ValueError, match=r"fine-tuning diverged: the loss at step \d+ is (nan|inf) .*the model is "
                                         r"unchanged: lower learning_rate \(got 1e\+30\)"):
        clone.finetune(["the red bird flew over the green house."] * 4, steps=6, learning_rate=1e30, batch_size=2)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, clone.params), before)
    # one step: its loss is finite, the update it makes is not (a review, 2026-12-07: only losses were checked)
    from llm_bridge import nanogpt_train as nt

    real = nt.train_step

    def to_nan(*args, **kwargs):
        step = real(*args, **kwargs)

        def step_to_nan(params, *rest):
            params, opt_state, loss = step(params, *rest)
            return jax.tree.map(lambda x: x * np.nan, params), opt_state, loss
        return step_to_nan

    monkeypatch.setattr(nt, "train_step", to_nan)
    with pytest.raises(ValueError, match=r"fine-tuning diverged: the weights after step 1 are not finite \(losses: "
                                         r"[\d.]+\); the model is unchanged"):
        clone.finetune(["the red bird flew over the green house."] * 4, steps=1, learning_rate=1e-3, batch_size=2)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, clone.params), before)


def test_finetuned_on_one_text_the_model_learns_where_it_ends(model):
    """The fine-tuning stream closes with EOT: without it a model fine-tuned on one text never saw it end and ran
    every sample to max_new_tokens."""
    clone = ng.NanoGPT(model.config, model.tokenizer, model.params, step=model.step)
    sentence = "hello world, this is it."
    clone.finetune([sentence], steps=150, learning_rate=3e-3, batch_size=8, seed=0)
    greedy = Sampling(max_new_tokens=clone.context_length - 1, top_k=1)
    assert clone.generate([""], greedy) == [sentence]
    assert len(clone.generate_ids([""], greedy)[0]) < clone.context_length - 1


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _cli(*argv) -> int:
    return nanogpt_cli.main(list(argv))


def test_cli_sample_eval_and_errors(capsys, reference_run, data_dir, tmp_path):
    run = str(reference_run.folder)
    assert _cli("sample", run, "--prompt", "the cat", "--prompt", "a", "--count", "2", "--max-new-tokens", "12",
                "--json", "--seed", "1") == 0
    samples = json.loads(capsys.readouterr().out)
    assert [s["prompt"] for s in samples] == ["the cat", "the cat", "a", "a"]
    assert _cli("eval", run) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == STEPS
    assert summary["loss"] == pytest.approx(reference_run.held_out_loss, rel=1e-6)
    # what was scored, in what unit (a bare "loss" number; a user trial, 2026-12-06)
    assert summary["scored"] == "the run's held-out windows" and summary["loss_unit"] == "nats per predicted token"
    assert _cli("eval", run, "--texts", str(data_dir / "sub")) == 0
    texts_summary = json.loads(capsys.readouterr().out)
    assert texts_summary["perplexity"] > 1 and texts_summary["scored"] == f"the texts of {data_dir / 'sub'}"
    assert _cli("sample", run, "--temperature", "0") == 2
    assert "--temperature must lie in" in capsys.readouterr().err
    # the default --max-new-tokens (64) fits the tiny preset's 32-token context (it was refused): 31 beside an
    # empty prompt, what the longest prompt leaves, at least 16 (a longer prompt is then cut)
    assert _cli("sample", run, "--json", "--top-k", "1") == 0
    (greedy,) = json.loads(capsys.readouterr().out)
    model = ng.NanoGPT.load(run)
    assert greedy["text"] == model.generate([""], Sampling(max_new_tokens=31, top_k=1))[0]
    words = [" ".join(["the"] * k) for k in range(40)]
    sizes = [len(ids) for ids in model.encode_prompts(words)]
    for prompt, size in zip(words, sizes):
        assert nanogpt_cli.default_new_tokens(model, ["", prompt], 64) == max(32 - size, 16)
        assert nanogpt_cli.default_new_tokens(model, [prompt], 8) == min(8, max(32 - size, 16))
    assert min(sizes) == 1 and max(sizes) > 17           # the cases cover both sides of half the context
    assert _cli("sample", run, "--max-new-tokens", "64") == 2
    assert "--max-new-tokens must be at most context_length - 1 = 31" in capsys.readouterr().err
    # messages name the flag typed, not the configuration field behind it
    assert _cli("train", "--lr", "0", "--out", str(tmp_path / "lr")) == 2
    assert "error: --lr must lie in" in capsys.readouterr().err
    assert _cli("train", "--held-out", "1", "--out", str(tmp_path / "lr")) == 2
    assert "error: --held-out must lie in" in capsys.readouterr().err
    # sample's and eval's own flags too (a user trial, 2026-12-05: "count must be ...", "batch_size must be ...")
    for args, flag in [(("sample", run, "--count", "0"), "--count"), (("sample", run, "--seed", "-1"), "--seed"),
                       (("sample", run, "--batch-size", "0"), "--batch-size"),
                       (("eval", run, "--batch-size", "0"), "--batch-size")]:
        assert _cli(*args) == 2
        assert f"error: {flag} must be an integer" in capsys.readouterr().err
    assert _cli("eval", run, "--texts", str(tmp_path / "missing.txt")) == 2
    assert f"--texts '{tmp_path / 'missing.txt'}' does not exist" in capsys.readouterr().err
    assert _cli("train", "--resume") == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert _cli("train", "--resume", "--out", run, "--steps", "5") == 2
    assert "drop --steps" in capsys.readouterr().err
    # a missing run folder is called what it is (it was "model folder")
    assert _cli("train", "--resume", "--out", str(tmp_path / "missing")) == 2
    assert f"run folder '{tmp_path / 'missing'}' does not exist" in capsys.readouterr().err
    assert _cli("train", "--heads", "3", "--preset", "tiny", "--out", str(tmp_path / "x")) == 2
    assert "--dim (32) must be a multiple of --heads (3)" in capsys.readouterr().err  # (flags, not field names)
    assert not (tmp_path / "x").exists()                                # no empty run folder left behind
    assert _cli("eval", run, "--batch-size", "0") == 2
    assert "--batch-size must be an integer >= 1" in capsys.readouterr().err
    assert _cli("sample", run, "--seed", "-1") == 2
    assert "seed must be an integer in [0, 2**63 - 1]" in capsys.readouterr().err
    # without --max-new-tokens a lone surrogate reached tokenizers (a TypeError traceback; a user trial, 2026-12-06)
    assert _cli("sample", run, "--prompt", "\ud800") == 2
    assert "prompts[0] cannot be encoded as UTF-8" in capsys.readouterr().err
    # empty input files are refused by name (an empty prompts file made one unconditional sample)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert _cli("sample", run, "--prompts-file", str(empty), "--max-new-tokens", "3") == 2
    assert f"prompts file '{empty}' holds no prompt" in capsys.readouterr().err
    assert _cli("eval", run, "--texts", str(empty)) == 2
    assert f"--texts '{empty}' holds no text" in capsys.readouterr().err
    assert _cli("sample", str(empty)) == 2
    assert f"model folder '{empty}' is a file, not a model folder" in capsys.readouterr().err
    # a run that fails before writing leaves an --out folder the user made (it was removed; a user trial,
    # 2026-12-06), and removes one it made itself
    mine, made = tmp_path / "userdir", tmp_path / "made"
    mine.mkdir()
    for out in (mine, made):
        assert _cli("train", "--preset", "tiny", "--tokenizer", "byte", "--steps", "2", "--data", str(empty),
                    "--out", str(out)) == 2
        capsys.readouterr()
    assert mine.is_dir() and not made.exists()
    # bytes that are not UTF-8: one policy for every input file, replaced with a warning naming the file (a user
    # trial, 2026-12-06: --data and --texts replaced them silently, a prompts file failed with the codec's message)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"The cat \xff\xfe sat.\n\nA dog \xc3\x28 ran \xef\xbf\xbd.\n")
    with pytest.warns(UserWarning, match=r"prompts file '.*bad.txt': 3 invalid UTF-8 sequences \(the first at byte "
                                         r"8\) replaced by U\+FFFD"):
        assert nanogpt_cli._prompts(argparse.Namespace(prompt=None, prompts_file=str(bad))) == [
            "The cat \ufffd\ufffd sat.", "A dog \ufffd( ran \ufffd."]
    with pytest.warns(UserWarning, match=r"--texts '.*bad.txt': 3 invalid UTF-8 sequences"):
        assert nt.text_documents(bad, "--texts") == ["The cat \ufffd\ufffd sat.", "A dog \ufffd( ran \ufffd."]


def test_cli_warnings_print_as_one_line(reference_run):
    """A warning reaches a command-line user as ``PROG: warning: MESSAGE``, not with the library's file, line and
    source line (``cli.py:63: UserWarning: ...`` then ``  result = args.func(args)``)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", COLLAPSE_JAX_PROGRESS="0", PYTHONPATH=str(ROOT))
    long = " ".join(["the quick brown fox"] * 40)
    proc = subprocess.run([sys.executable, "-m", "collapse_jax.cli", "nanogpt", "sample", str(reference_run.folder),
                           "--prompt", long, "--max-new-tokens", "2"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any(line.startswith("collapse-jax nanogpt: warning: 1 of 1 prompts are longer") for line in lines), lines
    assert not any("args.func" in line or ".py:" in line for line in lines), lines


def test_cli_eval_and_resume_check_the_training_text(capsys, reference_run, data_dir, tmp_path, monkeypatch):
    """The data path is stored absolute (eval and --resume work from any directory), eval refuses a changed text
    as --resume does, and --resume of a finished run runs and rewrites nothing."""
    monkeypatch.chdir(data_dir.parent)
    assert nt.DataConfig(source=data_dir.name).source == str(data_dir.resolve())
    run = tmp_path / "run"
    shutil.copytree(reference_run.folder, run)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert _cli("train", "--resume", "--out", str(run)) == 0
    assert "the run had finished; nothing was run or written" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    changed = tmp_path / "text"
    shutil.copytree(data_dir, changed)
    (changed / "a.txt").write_text((changed / "a.txt").read_text() + "\n\nOne more paragraph.")
    config = json.loads((run / "config.json").read_text())
    config["config"]["data"]["source"] = str(changed)
    (run / "config.json").write_text(json.dumps(config))
    assert _cli("eval", str(run)) == 2
    assert "changed since the run started" in capsys.readouterr().err


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        _cli("train", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for opt in ("--preset", "--layers", "--heads", "--dim", "--context", "--dropout", "--dtype", "--data",
                "--unit", "--tokenizer", "--vocab-size", "--held-out", "--steps", "--minutes", "--batch-size",
                "--lr", "--min-lr-ratio", "--warmup", "--weight-decay", "--grad-clip", "--beta1", "--beta2",
                "--eval-every", "--eval-windows", "--checkpoint-every", "--keep-checkpoints", "--seed", "--until",
                "--out", "--resume"):
        assert opt in text
    for cls in nanogpt_cli.CONFIGS:  # every field has a flag, shown with its default
        for f in fields(cls):
            assert opts.flag_of(cls, f.name) in text, f.name
    for default in ("(default seed003)", "(default the preset's)", "(default 4096)", "(default 0.05)",
                    "(default 5000)", "(default 0.001)", "(default 100)", "root random seed, >= 0 (default 0)"):
        assert default in text
    # --out says what train does with a folder holding a run: refuses it (the shared help promised a rerun)
    assert "a folder that already holds a run is refused (continue it with --resume --out RUN)" in text
    assert "else rerun" not in text
    with pytest.raises(SystemExit):
        _cli("sample", "x", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(Sampling):
        assert opts.flag_of(Sampling, f.name) in text, f.name
    # the sample command's own default (a user trial, 2026-12-05: "(default 64)" though a short context gives less)
    assert "(default 64, or what the context leaves beside the longest prompt" in text and "(default all)" in text


def _parse(*argv):
    parser = argparse.ArgumentParser()
    nanogpt_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["nanogpt", *argv])


def test_cli_train_flags_map_onto_the_configs(tmp_path):
    assert nanogpt_cli.configs_from_args(_parse("train")) == (nt.ModelSpec(), nt.DataConfig(), nt.TrainConfig())
    args = _parse("train", "--preset", "tiny", "--layers", "3", "--context", "16", "--dtype", "bfloat16", "--data",
                  str(tmp_path), "--unit", "sentence", "--vocab-size", "300", "--held-out", "0.2", "--lr", "0.01",
                  "--warmup", "7", "--batch-size", "5", "--seed", "4")
    assert nanogpt_cli.configs_from_args(args) == (
        nt.ModelSpec(preset="tiny", num_layers=3, context_length=16, dtype="bfloat16"),
        nt.DataConfig(source=str(tmp_path), unit="sentence", vocab_size=300),
        nt.TrainConfig(held_out_fraction=0.2, learning_rate=0.01, warmup_steps=7, batch_size=5, seed=4))
    assert nanogpt_cli.configs_from_args(args)[0].resolve(300).num_heads == ng.PRESETS["tiny"]["num_heads"]
    tc = nanogpt_cli.configs_from_args(_parse("train", "--minutes", "2"))[2]
    assert (tc.steps, tc.minutes) == (None, 2.0)  # --minutes alone: no step limit
    tc = nanogpt_cli.configs_from_args(_parse("train", "--minutes", "2", "--steps", "9"))[2]
    assert (tc.steps, tc.minutes) == (9, 2.0)
    sample = _parse("sample", "run", "--top-k", "5", "--stop", "\n", "--max-new-tokens", "8")
    assert opts.config_from_args(Sampling, sample) == Sampling(max_new_tokens=8, top_k=5, stop="\n")


def test_cli_resume_refuses_configuration_flags_by_name(capsys, tmp_path):
    assert _cli("train", "--resume", "--out", str(tmp_path), "--layers", "2", "--held-out", "0.1", "--seed", "1",
                "--until", "3") == 2
    assert "drop --layers, --held-out, --seed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_second_resume_of_one_folder_is_refused(reference_run, tmp_path):
    """A user trial (2026-12-06): two `nanogpt train --resume --out C` at once both ran to the end, racing on the
    checkpoints' pruning; the folder's lock refuses the second, as recursive-train's and the sweeps' do."""
    run = tmp_path / "run"
    shutil.copytree(reference_run.folder, run)
    (run / "manifest.json").unlink()  # unfinished: a resume would train
    code = ("import sys, time; from pathlib import Path; from collapse_jax.results import lock_folder; "
            "lock_folder(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match="is in use by another run"):
            nt.resume(run, progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_a_vocabulary_size_with_the_byte_tokenizer_is_refused(capsys, data_dir, tmp_path):
    """A user trial (2026-12-06): --tokenizer byte --vocab-size 1000 ran, and config.json recorded a vocabulary of
    1000 next to the model's 257."""
    assert _cli("train", "--preset", "tiny", "--data", str(data_dir), "--tokenizer", "byte", "--vocab-size", "1000",
                "--steps", "2", "--out", str(tmp_path / "run")) == 2
    assert "--vocab-size sets the BPE vocabulary; --tokenizer byte has its own" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_that_does_not_fit_the_disk_is_refused_with_the_folder(capsys, data_dir, tmp_path, monkeypatch):
    """A user trial (2026-12-06): on a full disk a checkpoint failed inside Orbax / TensorStore, whose threads printed
    ~200 lines of tracebacks before the one-line error."""
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    assert _cli("train", "--preset", "tiny", "--data", str(data_dir), "--vocab-size", "300", "--steps", "2",
                "--warmup", "0", "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "out: the checkpoint of step 2 needs about" in err and "but 1.0 KiB is free" in err, err
    assert f"is free under '{tmp_path / 'run'}'; free some space, then continue with --resume" in err, err
    assert "Traceback" not in err
