"""The bridge into the core (llm_bridge.embedding_metrics): per-model responses or GMM weights -> the estimators of
collapse_jax.distance and collapse_jax.sigma_monitor, checked against direct calls of those functions and against
the GMM network simulator's own ||D(t)||_F."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import distance, gmm_network, sigma_monitor, spectral
from llm_bridge import embedding_metrics as em


@pytest.fixture
def emb():
    """(num_models=3, num_samples=5, dim=8) embeddings."""
    return np.random.default_rng(0).normal(size=(3, 5, 8))


def test_matches_direct_core_calls(emb):
    m = em.measure_embeddings(emb, seed=4)
    x = jnp.asarray(emb)
    means = jnp.mean(x, axis=1)
    d = distance.pairwise_distances(means)
    flat = emb.reshape(15, 8)
    np.testing.assert_allclose(m.means, emb.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(m.distances, d, rtol=1e-14)
    assert m.dnorm == pytest.approx(float(distance.frobenius_norm(d)), rel=1e-14)
    assert m.dnorm == pytest.approx(float(distance.distance_matrix_norm(means)), rel=1e-12)
    np.testing.assert_allclose(m.spread, distance.within_model_spread(x), rtol=1e-14)
    all_d = distance.pairwise_distances(jnp.asarray(flat))
    np.testing.assert_allclose(em.response_distances(flat), all_d, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(m.mds, distance.classical_mds(all_d, 2), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(m.embeddings, emb)

    # Sigma: the same monitor settings fed directly; and Track values from the observed block by hand
    with pytest.warns(UserWarning, match="n = 8 observed rows give no log-det interval at d = 8"):
        ref, record = sigma_monitor.SigmaMonitor(jax.random.key(4), 8, eps=0.01 / 8).update(flat)
    assert m.sigma == pytest.approx(record, rel=1e-12, nan_ok=True)   # interval NaN: n < d + 2 (not said there:
    # measure_embeddings reports the tracks only)
    np.testing.assert_array_equal(m.monitor.indices, ref.indices)
    block = sigma_monitor.normalize_rows(flat[ref.indices])
    vals = sigma_monitor.tracks(spectral.gram(jnp.asarray(block)), 8, 15, 0.01 / 8)
    assert m.sigma["u_cov"] == pytest.approx(float(vals.u_cov), rel=1e-12)
    assert m.sigma["envelope"] == pytest.approx(float(vals.envelope), rel=1e-12)


def test_shapes_and_rows(emb):
    m = em.measure_embeddings(emb, mds_components=3)
    assert m.means.shape == (3, 8) and m.distances.shape == (3, 3) and m.spread.shape == (3,)
    assert m.mds.shape == (15, 3)
    np.testing.assert_array_equal(m.model_of_row, [0] * 5 + [1] * 5 + [2] * 5)
    none = em.measure_embeddings(emb, sigma=False, mds_components=None)
    assert none.sigma is None and none.monitor is None and none.mds is None
    assert none.dnorm == m.dnorm


def test_response_distances_in_row_blocks(emb):
    flat = emb.reshape(15, 8)
    whole = em.response_distances(flat)
    small = em.response_distances(flat, chunk_bytes=1)  # one row per block
    np.testing.assert_array_equal(whole, small)
    assert np.all(np.diag(whole) == 0) and np.array_equal(whole, whole.T)
    # the jitted pairwise_distances bit for bit (docs/diversity.md; the eager call may differ in the last bit)
    rng = np.random.default_rng(0)
    for shape in ((7, 5), (17, 3), (40, 384), (1, 2)):
        for dtype in (np.float32, np.float64):
            x = rng.normal(size=shape).astype(dtype)
            np.testing.assert_array_equal(em.response_distances(x), jax.jit(distance.pairwise_distances)(x))
            np.testing.assert_allclose(em.response_distances(x), distance.pairwise_distances(x),
                                       rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("kwargs,match", [
    (dict(flat=np.ones(3)), r"flat must .* got shape \(3,\)"),
    (dict(flat=np.ones((2, 3, 4))), "flat must be a matrix of rows"),
    (dict(flat=np.ones((2, 3)) * 1j), "flat must be real"),
    (dict(flat=np.ones((2, 3)), chunk_bytes=-5), "chunk_bytes must be an integer"),
    (dict(flat=np.ones((2, 3)), chunk_bytes="x"), "chunk_bytes must be an integer")])
def test_response_distances_bad_input(kwargs, match):
    """A user trial: 1-D / 3-D input failed unpacking the shape, chunk_bytes=-5 was accepted, "x" failed in //."""
    with pytest.raises(ValueError, match=match):
        em.response_distances(**kwargs)


def test_monitor_kept_across_steps(emb):
    first = em.measure_embeddings(emb, seed=1)
    again = em.measure_embeddings(emb, monitor=first.monitor)
    assert again.sigma["checkpoint"] == 1 and again.sigma["delta_u_cov"] == pytest.approx(0.0, abs=1e-12)
    # contraction: every response pulled towards its model's first response -> Track II drifts down
    shrunk = emb[:, :1] + 0.05 * (emb - emb[:, :1])
    later = em.measure_embeddings(shrunk, monitor=again.monitor)
    assert later.sigma["checkpoint"] == 2 and later.sigma["delta_u_cov"] < -1.0
    assert em.measure_embeddings(shrunk, monitor=first.monitor).sigma["checkpoint"] == 1  # monitors are values
    # refused before any distance or MDS is computed (it failed only at the monitor's update)
    with pytest.raises(ValueError, match=r"monitor started with N=15 rows .* these embeddings give N=10"):
        em.measure_embeddings(emb[:2], monitor=first.monitor)
    with pytest.raises(ValueError, match=r"of dimension d=\d+, but these .* dimension d=3"):
        em.measure_embeddings(emb[..., :3], monitor=first.monitor)


def test_models_that_repeat_a_few_texts_still_get_their_sigma_tracks():
    """An audit (2026-12-04): 4 models repeating the same 20 sentences (embeddings spanning fewer than d
    directions) made measure_embeddings raise "G_1 is singular" once the default block reached 1.2 d rows; with fewer
    rows the same collapse was reported. Now the tracks come and the interval is NaN, with a warning."""
    r = np.random.default_rng(7)
    sentences = r.standard_normal((5, 8))
    emb = sentences[r.integers(0, 5, (4, 30))]                  # 120 responses, rank 5 < d = 8, block 60 >= 1.2 d
    with pytest.warns(UserWarning, match="no log-det interval"):
        m = em.measure_embeddings(emb, seed=0)
    assert np.isnan(m.sigma["logdet_center"]) and np.isfinite(m.sigma["u_lln"]) and np.isfinite(m.dnorm)


def test_gmm_network_weights_give_the_simulators_dnorm():
    cfg = gmm_network.make_config(mu=((-5.0,), (0.0,), (5.0,)), num_models=4, num_steps=6, record_pi=True,
                                  record_d=True)
    res = gmm_network.simulate(3, cfg, 2, dtype=jnp.float64, progress=False)
    monitor = None
    for r in range(2):
        for t in range(cfg.num_steps + 1):
            pi = res.weights[r, t]  # (num_models, num_components)
            m = em.measure_embeddings(pi, monitor=monitor if r == 0 else None)
            monitor = m.monitor if r == 0 else monitor
            assert m.dnorm == pytest.approx(float(res.dnorm[r, t]), rel=1e-12, abs=1e-15)
            np.testing.assert_allclose(m.distances, res.distances[r, t], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(m.means, pi, rtol=1e-15)
            np.testing.assert_array_equal(m.spread, np.zeros(4))
    assert monitor.values().u_cov.shape == (cfg.num_steps + 1,)


def test_gmm_one_hot_samples():
    """Per-sample one-hot component indicators: X_i = component frequencies (exact), and ||D||_F tends to the
    weights' as the sample grows."""
    pi = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2]])
    rng = np.random.default_rng(0)
    comps = np.stack([rng.choice(3, size=4000, p=p) for p in pi])  # (num_models, num_samples)
    one_hot = np.eye(3)[comps]  # (num_models, num_samples, num_components)
    m = em.measure_embeddings(one_hot, mds_components=None, sigma=False)
    freq = np.stack([np.bincount(c, minlength=3) / 4000 for c in comps])
    np.testing.assert_allclose(m.means, freq, rtol=1e-13)
    assert m.dnorm == pytest.approx(float(distance.distance_matrix_norm(jnp.asarray(freq))), rel=1e-12)
    assert m.dnorm == pytest.approx(em.measure_embeddings(pi, sigma=False).dnorm, abs=0.03)  # SE ~ 0.01


def test_responses_with_precomputed_embeddings(emb):
    responses = [[f"model {i} text {l}" for l in range(5)] for i in range(3)]
    a = em.measure_responses(responses, embeddings=emb, seed=2)
    b = em.measure_embeddings(emb, seed=2)
    assert a.dnorm == b.dnorm and a.sigma == b.sigma
    np.testing.assert_array_equal(a.mds, b.mds)


def test_responses_with_minilm():
    enc = pytest.importorskip("llm_bridge.encoders").minilm_encoder()
    responses = [["The cat sat on the mat.", "A cat is sleeping on a rug."],
                 ["Stock prices fell sharply today.", "The market dropped at the opening bell."],
                 ["The kitten naps on the carpet.", "My cat sleeps on the mat all day."]]
    m = em.measure_responses(responses, enc)
    flat = enc.encode([t for r in responses for t in r])
    np.testing.assert_allclose(m.embeddings, flat.reshape(3, 2, -1), rtol=1e-6, atol=1e-7)
    # the two cat models are closer to each other than either is to the finance model
    assert m.distances[0, 2] < min(m.distances[0, 1], m.distances[1, 2])
    assert m.embeddings.shape == (3, 2, 384) and np.isfinite(m.sigma["u_cov"])


class StubEncoder:
    """An encoder whose output is ``make(num_texts)``; counts its encode calls."""

    def __init__(self, make):
        self.make, self.calls = make, 0

    def encode(self, texts, batch_size=32):
        self.calls += 1
        return self.make(len(texts))


def test_encoder_output_shape_checked():
    def rows(k):
        return np.random.default_rng(0).normal(size=(k, 4))

    m = em.measure_responses([["a", "b"], ["c", "d"]], StubEncoder(rows), sigma=False)
    np.testing.assert_array_equal(m.embeddings, rows(4).reshape(2, 2, 4))
    # 3 rows for 2 texts reshaped silently to (2, 1, 6) before; 1-D, NaN and non-numbers are refused too
    for make, match in [(lambda k: np.ones((k + 1, 6)), r"returned shape \(3, 6\) for 2 texts; encode must return "
                                                       r"\(num_texts, dim\) = \(2, dim\)"),
                        (lambda k: np.ones(k * 4), r"returned shape \(8,\) for 2 texts"),
                        (lambda k: np.ones((k, 0)), r"returned shape \(2, 0\)"),
                        (lambda k: np.full((k, 3), np.nan), r"returned NaN or inf in 2 of 2 rows"),
                        (lambda k: [["x"] * 3] * k, r"must return a \(num_texts, dim\) array of numbers")]:
        with pytest.raises(ValueError, match="encoder 'StubEncoder' " + match):
            em.measure_responses([["a"], ["b"]], StubEncoder(make), sigma=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mds_components=0), "mds_components must be an integer >= 1"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    (dict(seed=1.5), r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    (dict(monitor="m"), "monitor must be a .*SigmaMonitor"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    # a fresh monitor's own sizes (refused by its first update, after every text was embedded; a user trial)
    (dict(monitor=sigma_monitor.SigmaMonitor(0, 3)), r"monitor observes n=3 rows, more than the N=2 \(num_models"),
    (dict(monitor=sigma_monitor.SigmaMonitor(0, 1, num_points=10)),
     r"monitor was built for N=10 rows of dimension d=None, but these embeddings give N=2"),
])
def test_responses_arguments_checked_before_encoding(kwargs, match):
    enc = StubEncoder(lambda k: np.ones((k, 4)))
    with pytest.raises(ValueError, match=match):
        em.measure_responses([["a"], ["b"]], enc, **kwargs)
    assert enc.calls == 0


def test_zero_response_refused_before_compute_only_for_sigma(emb):
    e = emb.copy()
    e[1, 2] = 0.0
    with pytest.MonkeyPatch.context() as mp:   # the check comes before any distance is computed
        mp.setattr(em.distance, "pairwise_distances", lambda *a: pytest.fail("computed before the check"))
        with pytest.raises(ValueError, match=r"embeddings\[1, 2\] \(model 1, text 2\) has zero norm \(1 of 15 "
                                             r"responses do\).*sigma=False"):
            em.measure_embeddings(e)
        with pytest.raises(ValueError, match=r"embeddings\[0\] \(model 0\) has zero norm"):
            em.measure_embeddings(np.array([[0.0, 0.0], [1.0, 0.0]]))
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
            em.measure_embeddings(emb, sigma=False, seed=-1)
    # without Sigma a zero response is an ordinary point: D, ||D||_F, spread and MDS as for any other
    m = em.measure_embeddings(e, sigma=False, mds_components=2)
    x = e.mean(axis=1)
    ref = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.testing.assert_allclose(m.distances, ref, rtol=1e-5, atol=1e-6)
    assert m.dnorm == pytest.approx(np.sqrt((ref ** 2).sum()), rel=1e-5)
    assert m.sigma is None and np.all(np.isfinite(m.mds)) and np.all(np.isfinite(m.spread))


@pytest.mark.parametrize("call, match", [
    (lambda: em.measure_responses([["a", "b"], ["c"]], embeddings=np.ones((2, 2, 3))),
     r"rectangular .*responses\[0\] has 2 texts but responses\[1\] has 1"),
    (lambda: em.measure_responses([], embeddings=np.ones((2, 2, 3))), r"at least 2 models"),
    (lambda: em.measure_responses([["a", "b"]], embeddings=np.ones((1, 2, 3))), r"at least 2 models"),
    (lambda: em.measure_responses([["a"], []], embeddings=np.ones((2, 1, 3))), r"responses\[1\] must hold at least"),
    (lambda: em.measure_responses([["a"], [3]], embeddings=np.ones((2, 1, 3))), r"responses\[1\]\[0\] must be a str"),
    (lambda: em.measure_responses("ab", embeddings=np.ones((2, 1, 3))), "list of per-model lists"),
    (lambda: em.measure_responses([["a"], ["b"]]), "exactly one of encoder and embeddings"),
    (lambda: em.measure_responses([["a"], ["b"]], embeddings=np.ones((2, 2, 3))),
     r"embeddings must have shape .* = \(2, 1, dim\)"),
    (lambda: em.measure_embeddings(np.ones((1, 4, 3))), r"at least 2 models"),
    (lambda: em.measure_embeddings(np.ones((2, 0, 3))), r"shape \(num_models, num_samples, dim\)"),
    (lambda: em.measure_embeddings(np.ones(5)), r"shape \(num_models, num_samples, dim\)"),
    (lambda: em.measure_embeddings(np.full((2, 2, 3), np.inf)), "finite"),
    (lambda: em.measure_embeddings(np.ones((2, 2, 3)), mds_components=0), "mds_components must be an integer"),
    (lambda: em.measure_embeddings(np.ones((2, 2, 3)), mds_components=5), r"mds_components must be in \[1, 4\]"),
    (lambda: em.measure_responses([["a"], ["b"]], embeddings=np.ones((2, 1, 3)), mds_components=3),
     r"mds_components must be in \[1, 2\]"),
    (lambda: em.measure_embeddings([[[1.0, 2.0]], [[3.0]]]), "rectangular array of numbers"),
    # a user trial (2026-12-06): complex rows ran with their imaginary parts dropped (only NumPy's ComplexWarning)
    (lambda: em.measure_embeddings(np.ones((2, 2, 3), complex)), "embeddings must be real numbers, got dtype complex"),
    (lambda: em.measure_responses([["a"], ["b"]], embeddings=[[[1.0, 2.0]], [[3.0]]]),
     "embeddings must be a rectangular array of numbers"),
    (lambda: em.measure_embeddings(np.ones((2, 2, 3)), monitor="m"), "monitor must be a .*SigmaMonitor"),
    (lambda: em.measure_responses([["a"], ["b"]], "minilm"), "encoder must be an llm_bridge.encoders.Encoder"),
    (lambda: em.sigma_monitor(10, 4, block=11), "block must be at most num_points = 10"),
    # (eps = 0 refused here at any block, while SigmaMonitor took it; now both where the block spans d: a user
    # trial, 2026-12-07)
    (lambda: em.sigma_monitor(10, 16, eps=0.0), r"eps must be > 0 for rank-deficient input \(5 points in dim 16\)"),
    (lambda: em.sigma_monitor(10, 4, eps=-1.0), r"eps must lie in \[0.0, inf\)"),
    # a user trial (2026-12-05): a monitor built for (N, d) took other shapes at its first update (eps from the
    # wrong d; N = 100 given 50 rows reported an "exact" interval of the whole set)
    (lambda: em.sigma_monitor(50, 16).update(np.ones((50, 8)) + np.eye(50, 8)),
     r"embeddings must have dim = 16 \(this monitor was built for N = 50, d = 16\), got shape \(50, 8\)"),
    (lambda: em.sigma_monitor(100, 8).update(np.ones((50, 8)) + np.eye(50, 8)),
     "embeddings must have num_points = 100"),
    (lambda: sigma_monitor.normalize_rows(np.eye(3)[[0, 2, 1, 2]] * np.r_[1, 1, 0, 1][:, None]),
     r"embeddings\[2\] has zero norm"),
    # a user trial (2026-12-06): a zero row 5 in the observed block was named by its place there ("embeddings[4]"),
    # one outside the block passed although the interval's target normalises every row
    *((lambda zero=zero: sigma_monitor.SigmaMonitor(jax.random.key(0), 50).update(
        np.r_[np.random.default_rng(0).standard_normal((zero, 8)), np.zeros((1, 8)),
              np.random.default_rng(1).standard_normal((99 - zero, 8))]),
       rf"embeddings\[{zero}\] has zero norm \(1 of the 100 rows do\)") for zero in range(0, 100, 7)),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("scale", [1e19, 1e-23])
def test_float32_response_distances_neither_overflow_nor_underflow(scale):
    # an audit (2026-12-04): plain sqrt(sum(diff^2)) made every response distance inf at 1e19 and 0 at 1e-23 in
    # float32 (the default without x64), where pairwise_distances scales by a power of two and is right
    e = np.random.default_rng(0).normal(size=(3, 2, 4)) * scale
    flat = e.reshape(6, 4)
    want = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
    with jax.enable_x64(False):
        got = np.asarray(em.response_distances(flat.astype(np.float32)), np.float64)
        result = em.measure_embeddings(e, sigma=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    assert np.all(np.isfinite(result.mds)) and np.max(np.abs(result.mds)) > 0.1 * scale


@pytest.mark.parametrize("scale", [1e39, 1e-39])
def test_float32_range_refused_naming_embeddings(scale):
    e = np.random.default_rng(0).normal(size=(3, 2, 4)) * scale
    with jax.enable_x64(False), pytest.raises(ValueError, match="embeddings hold values .* float32"):
        em.measure_embeddings(e, sigma=False)
    assert np.isfinite(em.measure_embeddings(e, sigma=False).dnorm)     # with x64 (the suite's default) it is fine


def test_float32_embeddings_near_the_top_of_the_range():
    """An audit (2026-12-04): embeddings that float32 holds, near 3e38, gave means inf, D NaN, ||D||_F NaN and spread
    inf (their sums and differences overflowed) without an error; a response with an infinite entry had a NaN
    distance to itself."""
    e = np.array([[[3e38], [3e38]], [[2e38], [2e38]]])
    with jax.enable_x64(False):
        m = em.measure_embeddings(e, sigma=False, mds_components=1)
        d_inf = np.asarray(em.response_distances(np.array([[np.inf, 0.0], [0.0, 0.0]], np.float32)))
    np.testing.assert_allclose(m.means, [[3e38], [2e38]], rtol=1e-7)
    np.testing.assert_allclose(m.distances, [[0, 1e38], [1e38, 0]], rtol=1e-6)
    assert m.dnorm == pytest.approx(np.sqrt(2) * 1e38, rel=1e-6)
    np.testing.assert_array_equal(m.spread, [0.0, 0.0])
    np.testing.assert_allclose(np.sort(np.abs(m.mds[:, 0])), [5e37] * 4, rtol=1e-5)
    assert np.all(np.diagonal(d_inf) == 0) and np.isinf(d_inf[0, 1])
