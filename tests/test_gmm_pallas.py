"""The Pallas GMM network kernel (GPU form), run here in Pallas's interpreter: its law against the NumPy reference and
the portable kernel, its invariants, a replicate's records depending only on its key, bad input, and its lowering to
Triton (checked without a GPU)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from native_support import NATIVE
from collapse_jax import gmm_network as gn
from collapse_jax import gmm_pallas as gp
from collapse_jax.replicates import replicate_keys

THREE_2D = dict(mu=((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0)), sigma=((1.0, 0.3), (0.3, 0.8)), num_models=2,
                points_per_step=4, beta=0.4, dirichlet_a=0.7, num_steps=10, eps=0.05, num_human=10,
                pi_ref=(0.5, 0.3, 0.2), alpha=0.05, c=0.01)


# The law against the NumPy reference (Figure 4; B = 3, d = 2 with human data): tests/test_gmm_network.py, which runs
# every backend against the same reference draws.


@pytest.mark.xdist_group("gmm-pallas")  # shares compiles with tests/test_gmm_network.py
def test_invariants_and_start():
    """B = 3, d = 2, human data (eps = 0, so pruning keeps sum 1), at every step: weights on the simplex, dropped
    components stay dropped, ``alive``, ``D``, ``||D||_F`` and ``collapsed`` consistent with the weights; Pi(0)
    drawn from each replicate's key as the native kernel draws it."""
    cfg = gn.make_config(**{**THREE_2D, "eps": 0.0}, record_pi=True, record_d=True)
    ours = gn.simulate(3, cfg, 64, backend="pallas", progress=False)
    assert ours.dnorm.dtype == np.float32 and ours.alive.dtype == np.int8 and ours.collapsed.dtype == bool
    w = ours.weights.astype(np.float64)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=5e-5)  # float32 (the portable kernel drifts as much)
    dropped = w == 0
    assert np.all(dropped[:, 1:] >= dropped[:, :-1]), "a dropped component came back"
    np.testing.assert_array_equal(ours.alive, (w > 0).sum(-1))
    brute = np.linalg.norm(w[:, :, :, None, :] - w[:, :, None, :, :], axis=-1)
    np.testing.assert_allclose(ours.distances, brute, atol=2e-6)
    np.testing.assert_allclose(ours.dnorm, np.sqrt((brute**2).sum((-1, -2))), atol=5e-6)
    one_hot = (w > 0).sum(-1) == 1
    same = (w.argmax(-1) == w[:, :, :1].argmax(-1)).all(-1)
    np.testing.assert_array_equal(ours.collapsed, one_hot.all(-1) & same)
    if NATIVE:
        native = gn.simulate(3, cfg, 64, backend="native", dtype=jnp.float32, progress=False)
        np.testing.assert_allclose(ours.weights[:, 0], native.weights[:, 0], rtol=1e-6)


@pytest.mark.xdist_group("gmm-pallas")  # shares compiles with tests/test_gmm_network.py
def test_a_replicate_depends_only_on_its_key():
    """Same seed, same records; another seed, others; the block size (replicates per program), the chunking and
    the first replicate's index change nothing; run_network gives the replicate of its key; a grid's cell equals
    that cell run alone."""
    cfg = gn.paper_config(4, num_steps=25, record_pi=True)
    params = gn.make_params(cfg)
    keys = replicate_keys(9, 0, 20)
    full = gn.simulate(9, cfg, 20, backend="pallas", progress=False)
    narrow = gp.pallas_records(keys, cfg.static, params, block=8)
    for field, a in zip(full._fields, full):
        if a is not None:
            np.testing.assert_array_equal(np.asarray(getattr(narrow, field)), a, err_msg=field)
    np.testing.assert_array_equal(gn.simulate(9, cfg, 20, backend="pallas", progress=False).weights, full.weights)
    part = gn.simulate(9, cfg, 7, backend="pallas", first_replicate=13, chunk_size=3, progress=False)
    np.testing.assert_array_equal(part.weights, full.weights[13:])
    one = gn.run_network(keys[5], cfg, dtype=jnp.float32, backend="pallas")
    np.testing.assert_array_equal(np.asarray(one.weights), full.weights[5])
    other = gn.simulate(10, cfg, 20, backend="pallas", progress=False)
    assert not np.allclose(other.dnorm[:, 5:], full.dnorm[:, 5:])
    cells = [gn.make_params(cfg.replace(beta=b)) for b in (0.3, 0.5)]
    grid = gn.simulate(9, cfg, 20, params=cells, backend="pallas", progress=False)
    assert grid.dnorm.shape == (2, 20, 26)
    np.testing.assert_array_equal(grid.dnorm[1], full.dnorm)


@pytest.mark.slow
def test_figure6_same_law_as_portable_kernel():
    """Figure 6 (B = 11): ||D(t)||_F against the portable kernel (KS, independent seeds). Slow here: the
    interpreter compiles the eleven-component kernel in about 30 s."""
    cfg = gn.paper_config(6, num_steps=25)
    ours = gn.simulate(1, cfg, 512, backend="pallas", progress=False)
    portable = gn.simulate(2, cfg, 400, backend="jax", progress=False)
    for t in (1, 10, 25):
        assert stats.ks_2samp(ours.dnorm[:, t], portable.dnorm[:, t]).pvalue > 1e-3, t


@pytest.mark.parametrize("num_components", [2, 3, 5, 11])
def test_pruning_in_one_pass_equals_the_sequential_form(num_components):
    """The kernel's O(B) weight update (one running product of the dropped components' divisors) against the
    portable kernel's sequential drop-and-renormalise (:func:`gn.zivkovic_step`), in float64 (the suite's default),
    with drops."""
    rng = np.random.default_rng(num_components)
    drops = 0
    for _ in range(100):
        p, o = rng.dirichlet(np.ones(num_components)), rng.dirichlet(np.full(num_components, 0.3))
        alpha, c, eps = rng.uniform(0.5, 1.0), rng.uniform(0, 0.5 / num_components), rng.uniform(0, 0.1)
        ref = np.asarray(gn.zivkovic_step(jnp.asarray(p), jnp.asarray(o), alpha, c, eps))
        new = np.array([float(x) for x in gp._zivkovic(list(jnp.asarray(p)), list(jnp.asarray(o)), alpha, c, eps)])
        np.testing.assert_array_equal(new == 0, ref == 0)
        np.testing.assert_allclose(new, ref, rtol=1e-13, atol=1e-15)
        drops += int(np.sum(ref == 0))
    assert drops > 20  # the drop path ran


@pytest.mark.parametrize("cfg", [gn.paper_config(4), gn.paper_config(6, record_pi=True, record_d=True),
                                 gn.make_config(**THREE_2D)], ids=["fig4", "fig6-records", "B3-d2-human"])
def test_lowers_to_triton(cfg):
    """Every operation of the kernel has a Triton lowering (Pallas lowers for CUDA without a GPU): one Triton call."""
    text = gp.lower_for_gpu(cfg.static, gn.make_params(cfg))
    assert text.count("__gpu$xla.gpu.triton") == 1


def test_bad_input():
    cfg = gn.paper_config(4, num_steps=3)
    with pytest.raises(ValueError, match="float32"):
        gn.simulate(0, cfg, 4, backend="pallas", dtype=jnp.float64)
    with pytest.raises(ValueError, match="backend must be one of auto, native, jax, pallas"):
        gn.simulate(0, cfg, 4, backend="triton")
    with pytest.raises(ValueError, match="num_models must be <= 64, got 65"):
        gn.simulate(0, gn.paper_config(4, num_steps=3, num_models=65), 4, backend="pallas")
    with pytest.raises(ValueError, match="num_components must be <= 32, got 33"):
        gn.simulate(0, gn.make_config(mu=[[float(b)] for b in range(33)], num_steps=3), 4, backend="pallas")
    with pytest.raises(ValueError, match="block must be a power of two"):
        gp.pallas_records(replicate_keys(0, 0, 4), cfg.static, gn.make_params(cfg), block=24)


@pytest.mark.xdist_group("gmm-pallas")  # shares compiles with tests/test_gmm_network.py
def test_two_component_ownership_of_a_dropped_component_is_zero_not_nan():
    """An audit (2026-12-07): the portable kernel's 0 / 0 fix (2026-12-04, p_0 = 0 dropped and p_1 rho underflowing
    to 0) had not reached this kernel, whose NaN weights then spread to D and the alive counts: 52 of 64 replicates
    of the run below (mu = +-20, eps = 1, alpha = 1e-4), where the native and portable kernels gave none."""
    p = np.asarray([[0.0, 1e-20], [0.25, 0.75], [0.0, 1.0]], np.float32)
    feat = np.asarray([1e-30, 2.0, 0.5], np.float32)
    o = np.stack([np.asarray(x) for x in gp._ownership([jnp.asarray(p[:, 0]), jnp.asarray(p[:, 1])],
                                                       [jnp.asarray(feat)])], axis=-1)
    np.testing.assert_allclose(o, [[0.0, 1.0], [0.25 / (0.25 + 1.5), 1.5 / 1.75], [0.0, 1.0]], rtol=1e-6)
    cfg = gn.make_config(mu=(-20.0, 20.0), sigma=1.0, num_models=2, points_per_step=10, beta=1.0, num_steps=4,
                         initial_weights=((1e-5, 1 - 1e-5), (0.5, 0.5)), alpha=1e-4, c=0.2, eps=1.0, record_pi=True)
    out = gn.simulate(0, cfg, 16, backend="pallas", progress=False)
    assert np.all(np.isfinite(np.asarray(out.weights))) and np.all(np.isfinite(np.asarray(out.dnorm)))
    assert np.mean(np.asarray(out.weights)[:, -1, 0, 0] == 0) > 0.5  # model 0 dropped component 0, as elsewhere


def test_counter_words_is_the_expected_count_of_a_replicates_draws():
    """gp.counter_words against a plain simulation of what a lane draws: per step n L (1 + ceil(d / 2)) words for the
    posts, then per model uniform indices of A(t) until k_t distinct ones (repeats drawn again)."""
    cfg = gn.make_config(mu=THREE_2D["mu"], sigma=THREE_2D["sigma"], num_models=2, points_per_step=3, beta=0.6,
                         num_steps=6, num_human=4)
    static, k = cfg.static, gn.make_params(cfg).num_draws
    rng = np.random.default_rng(0)
    totals = []
    for _ in range(4000):
        words = 0
        for t in range(static.num_steps):
            size = static.num_human + static.num_models * static.points_per_step * t
            words += static.num_models * static.points_per_step * (1 + (static.dim + 1) // 2)
            for _m in range(static.num_models):
                seen = set()
                while len(seen) < min(k[t], size):
                    words += 1
                    seen.add(int(rng.integers(size)))
        totals.append(words)
    se = np.std(totals) / np.sqrt(len(totals))
    assert abs(np.mean(totals) - gp.counter_words(static, k)) < 4 * se


def test_a_network_past_the_lanes_32_bit_counter_is_refused_before_any_compute():
    big = gn.paper_config(4, num_models=64, points_per_step=10, num_steps=1000)  # about 1.4e10 words a replicate
    with pytest.raises(ValueError, match=r"32 bits; this network needs about 1.42e\+10 per replicate"):
        gn.simulate(0, big, 4, backend="pallas")
    with pytest.raises(ValueError, match="use backend='native' or 'jax'"):
        gp.pallas_records(replicate_keys(0, 0, 4), big.static, gn.make_params(big))
    assert gp.counter_words(gn.paper_config(4).static, gn.make_params(gn.paper_config(4)).num_draws) < 4e5
