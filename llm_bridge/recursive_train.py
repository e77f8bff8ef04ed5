"""Recursive training of the nanoGPT on its own text (seed 003 Section 5.2, Appendices C.3 and D; seed 002 S1/S2;
seed 004 accumulate vs replace).

Generation 0 is trained on ``n0`` real documents. Generation ``t >= 1`` is trained on ``n_t`` new documents, a
fraction ``alpha_t`` of them fresh real documents never used before (in that setting) and the rest unconditional
samples of generation ``t - 1`` (:data:`SETTINGS`):

* ``synthetic`` (seed 003 setting 0): ``alpha_t = 0``, trained on the new synthetic documents only (replace);
* ``accumulate`` (setting 1): ``alpha_t = 0``, trained on every document of generations ``0..t``;
* ``fixed`` (setting 2): ``alpha_t = alpha``;
* ``decaying`` (setting 3): ``alpha_t = alpha t^-gamma`` (:func:`collapse_jax.schedules.power_decay_alpha`);
* ``filtered`` (Appendix D): the ``fixed`` mixture screened by a real-vs-synthetic classifier
  (:mod:`llm_bridge.synthetic_filter`) fitted on sentence embeddings of real documents and of generation
  ``t - 1``'s samples; only documents classified real are trained on. Its type-I and type-II errors are measured on
  held-out documents and enter the filter theory (Theorem D.2);
* ``s1-base`` / ``s2-carry`` (seed 002 S1 / S2): pure synthetic, each generation starts from generation 0's trained
  weights (restart from the base) or from generation ``t - 1``'s (weights carried forward). Every other setting
  trains from the same fresh initialisation at every generation (seed 003 Appendix C.3: "from scratch").

Per generation: held-out perplexity on real documents; ``num_samples`` unconditional samples (the next generation's
synthetic documents and the unigram proxy below); responses to a frozen prompt bank (the first words of held-out
documents, the same sampling seed at every generation), embedded by the frozen encoder, with Sigma Track I / II drift
(:func:`llm_bridge.embedding_metrics.sigma_monitor`: observed block drawn once per repetition) and distinct-2, HHI,
self-BLEU and semantic diversity (:func:`llm_bridge.diversity.diversity`).

Theory (seed 003 Section 3): the multinomial recurrence (:func:`collapse_jax.multinomial.replace_risk`,
``accumulate_risk``, ``filter_risk``) with ``p`` the real text's unigram distribution over the tokenizer's vocabulary
(``K = vocab_size``, ``s = 1 - ||p||^2``) and ``n_t``, ``alpha_t`` the token counts and real-token share of each
generation's new training data. Measured beside it: ``||q_t - p||^2`` with ``q_t`` the unigram distribution of the
generation's samples (raw, and less its sampling noise ``(1 - ||q_t||^2) / (M - 1)`` for ``M`` sample tokens), and
``||f_t - p||^2`` with ``f_t`` that of its training data (the multinomial estimator's own object).

Layout of a run folder: ``config.json``; ``rep<r>/`` (``tokenizer.json``, ``classifier_real.npz``); ``rep<r>/gen00/``
(generation 0, shared by all settings) and ``rep<r>/<setting>/gen<tt>/``, each with ``checkpoints/`` (Orbax),
``train.json`` (the generation's new training documents and their source), ``samples.json``, ``responses.json``,
``embeddings.npz`` and ``metrics.json``, written last: a generation without it is deleted and redone on resume.
Every random draw is seeded from ``(seed, repetition, setting, generation, purpose)``, so a run killed at any point
and resumed gives the same files as one uninterrupted run. Finally ``results.json``, ``curves.npz``, the figures
and ``manifest.json``.
"""

from __future__ import annotations

import math
import shutil
import zlib
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collapse_jax import _checks, multinomial
from collapse_jax.progress import bar
from collapse_jax.replicates import root_key
from collapse_jax.results import RunFolder, atomic_savez, atomic_write_json, read_json, read_npz
from llm_bridge import bpe, synthetic_filter
from llm_bridge import nanogpt_train as nt
from llm_bridge.encoders import local_path
from llm_bridge.generators import Sampling
from llm_bridge.nanogpt import GPTConfig, NanoGPT, committed, init_params, without_x64
from llm_bridge.recursive_config import (  # noqa: F401 (re-exported)
    N_GROWTH, PRESETS, SETTINGS, RecursiveConfig, Setting, preset)


def derive_seed(*parts: int | str) -> int:
    """A 31-bit seed from ``parts`` (ints, and strings through CRC-32): ``SeedSequence(parts).generate_state``."""
    entropy = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


# ----------------------------------------------------------------------------------------------------------------
# A repetition's real data
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Repetition:
    """The real side of one repetition: held-out documents, prompt bank, classifier documents (with embeddings),
    the fresh pool (generation 0 takes its first ``n0``), the tokenizer and the real unigram distribution ``p``."""

    index: int
    folder: Path
    held_out: list[str]
    prompts: list[str]
    classifier_real: list[str]
    classifier_embeddings: np.ndarray | None
    pool: list[str]
    tokenizer: bpe.TextTokenizer
    reference: np.ndarray          # (vocab_size,) unigram distribution of the pool, EOT excluded


def load_real_documents(config: RecursiveConfig) -> list[str]:
    """The real documents, each cut to its first ``doc_words`` words, in corpus order."""
    return list(_documents(config.source, config.doc_words))


@lru_cache(maxsize=4)
def _documents(source: str, doc_words: int) -> tuple[str, ...]:
    """Cached per process: building the stdlib corpus parses every standard-library file (about 10 s)."""
    docs = nt.load_documents(nt.DataConfig(source=source, unit="paragraph"))
    return tuple(" ".join(d.split()[:doc_words]) for d in docs)


def unigram(ids: Sequence[Sequence[int]] | np.ndarray, vocab_size: int, exclude: int) -> tuple[np.ndarray, int]:
    """(unigram distribution over ``vocab_size`` tokens with token ``exclude`` left out, token count)."""
    flat = np.concatenate([np.asarray(i, np.int64) for i in ids]) if len(ids) else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=vocab_size).astype(np.float64)
    counts[exclude] = 0.0
    total = counts.sum()
    return (counts / total if total else counts), int(total)


def prepare_repetition(config: RecursiveConfig, docs: list[str], rep: int, folder: Path, encoder) -> Repetition:
    """Split the permuted documents (seed from ``(seed, rep)``), train or load the tokenizer (BPE on generation
    0's ``n0`` documents, saved to ``folder/tokenizer.json``) and embed the classifier's real documents once."""
    order = np.random.default_rng(derive_seed(config.seed, rep, "split")).permutation(len(docs))
    docs = [docs[i] for i in order]
    h, c = config.held_out_docs, config.reserved_classifier_docs
    held, cls_real, pool = docs[:h], docs[h:h + c], docs[h + c:]
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / bpe.FILENAME).is_file():
        tokenizer = bpe.TextTokenizer.load(folder)
    else:
        tokenizer = bpe.make_tokenizer("bpe", pool[:config.n0], config.vocab_size)
        tokenizer.save(folder)
    reference, _ = unigram(tokenizer.encode_batch(pool), tokenizer.vocab_size, tokenizer.eot_id)
    emb = None
    if any(SETTINGS[s].filtered for s in config.settings):
        path = folder / "classifier_real.npz"
        if not path.is_file():
            atomic_savez(path, {"embeddings": encoder.encode(cls_real)})
        (emb,) = read_npz(path, "embeddings")
    prompts = [" ".join(d.split()[:config.prompt_words]) for d in held[:config.prompts]]
    return Repetition(rep, folder, held, prompts, cls_real, emb, pool, tokenizer, reference)


# ----------------------------------------------------------------------------------------------------------------
# One generation
# ----------------------------------------------------------------------------------------------------------------


@without_x64
def train_params(model: NanoGPT, texts: Sequence[str], start, config: RecursiveConfig, seed: int
                 ) -> tuple[Any, list[float]]:
    """``config.steps`` AdamW steps from parameters ``start`` on the stream ``[EOT, text0, EOT, text1, ...]``:
    warm-up and cosine learning rate (:func:`llm_bridge.nanogpt_train.schedule`), a fresh optimiser state, batches
    and dropout from ``seed`` (:func:`llm_bridge.nanogpt_train.step_keys`). Returns (parameters, losses)."""
    tc = config.train_config(seed)
    stream = model.tokenizer.encode_documents(list(texts))
    if len(stream) < config.context_length + 2:
        raise ValueError(f"the training documents hold {len(stream)} tokens, fewer than context_length + 2 = "
                         f"{config.context_length + 2}; the filter kept too little or the documents are too short")
    step_fn = nt.train_step(model.graphdef, nt._hyper(tc), tc.batch_size, config.context_length)
    params = nt._copy(start)
    opt_state = committed(nt.optimizer(tc).init(params))
    lrs = np.asarray(nt.schedule(tc, tc.steps)(np.arange(1, tc.steps + 1)), dtype=np.float32)
    size = jnp.int32(len(stream))          # padded to a power of two (at least 2^16 tokens): one compilation per
    padded = np.zeros(max(1 << 16, 1 << (len(stream) - 1).bit_length()), np.int32)   # bucket, not per length
    padded[:len(stream)] = stream
    stream, losses, key = jnp.asarray(padded), [], root_key(tc.seed)
    for s in range(tc.steps):
        params, opt_state, loss = step_fn(params, opt_state, stream, key, s, lrs[s], size)
        losses.append(loss)
    return params, [float(v) for v in losses]


@dataclass
class Generation:
    """A finished generation as stored: its folder, model parameters, new and full training documents, samples,
    response embeddings and metrics."""

    folder: Path
    params: Any
    new_texts: list[str]
    new_real: list[bool]
    all_texts: list[str]
    samples: list[str]
    embeddings: np.ndarray
    metrics: dict


def load_generation(folder: Path, model: NanoGPT, previous: Generation | None, accumulate: bool) -> Generation:
    """A generation written by :func:`run_generation` (``metrics.json`` present)."""
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model.params)
    _, params = nt.restore_params(folder, abstract)
    train = read_json(folder / "train.json")
    (emb,) = read_npz(folder / "embeddings.npz", "embeddings")
    all_texts = (previous.all_texts if accumulate and previous is not None else []) + train["texts"]
    return Generation(folder, committed(params), train["texts"], train["real"], all_texts,
                      read_json(folder / "samples.json"), emb, read_json(folder / "metrics.json"))


@dataclass
class Context:
    """What every generation of a repetition shares: configuration, real data, encoder, model skeleton and the
    initial parameters (``init``; the same for every setting and generation)."""

    config: RecursiveConfig
    rep: Repetition
    encoder: Any
    skeleton: NanoGPT
    init: Any
    encoded: dict = field(default_factory=dict)


def _filter_candidates(ctx: Context, candidates: list[str], real: list[bool], previous: Generation, seed: int
                       ) -> tuple[np.ndarray, dict]:
    """Fit the classifier on half the classifier documents (real) and half the previous generation's spare
    samples (synthetic), measure type-I/II on the other halves, screen ``candidates``. Returns (keep mask,
    record)."""
    cfg = ctx.config
    half = cfg.classifier_docs // 2
    spare = previous.samples[cfg.num_samples - cfg.classifier_docs:]
    syn = ctx.encoder.encode(spare)
    real_emb = ctx.rep.classifier_embeddings
    perm = np.random.default_rng(seed).permutation(cfg.classifier_docs)
    fit_i, test_i = perm[:half], perm[half:]
    clf = synthetic_filter.fit(real_emb[fit_i], syn[fit_i], ridge=cfg.ridge)
    type1, type2 = synthetic_filter.error_rates(clf, real_emb[test_i], syn[test_i])
    keep = clf.keep(ctx.encoder.encode(candidates))
    is_real = np.asarray(real, bool)
    record = {"type1": type1, "type2": type2, "newton_steps": clf.iterations, "candidates": len(candidates),
              "kept": int(keep.sum()), "kept_real": int((keep & is_real).sum()),
              "kept_synthetic": int((keep & ~is_real).sum()),
              "batch_type1": float(np.mean(~keep[is_real])) if is_real.any() else math.nan,
              "batch_type2": float(np.mean(keep[~is_real])) if (~is_real).any() else math.nan}
    return keep, record


def new_documents(ctx: Context, setting: str, t: int, previous: Generation | None) -> tuple[list[str], list[bool],
                                                                                              dict]:
    """Generation ``t``'s new training documents and whether each is real, with the data record: generation 0 the
    pool's first ``n0``; later ``round(alpha_t n_t)`` unused pool documents and the rest the previous generation's
    first samples, screened by the classifier when the setting filters."""
    cfg = ctx.config
    if t == 0:
        docs = ctx.rep.pool[:cfg.n0]
        return docs, [True] * len(docs), {"fresh": len(docs), "synthetic": 0}
    fresh_counts, n_t = cfg.fresh_counts(setting), int(cfg.sizes()[t])
    start = int(fresh_counts[:t].sum())
    fresh = ctx.rep.pool[start:start + int(fresh_counts[t])]
    synth = previous.samples[:n_t - len(fresh)]
    texts, real = fresh + synth, [True] * len(fresh) + [False] * len(synth)
    record: dict[str, Any] = {"fresh": len(fresh), "synthetic": len(synth)}
    if SETTINGS[setting].filtered:
        keep, record["filter"] = _filter_candidates(ctx, texts, real, previous,
                                                    derive_seed(cfg.seed, ctx.rep.index, setting, t, "classifier"))
        record["candidate_tokens"] = _token_split(ctx, texts, real)
        texts = [x for x, k in zip(texts, keep) if k]
        real = [r for r, k in zip(real, keep) if k]
    return texts, real, record


def document_text(tok, ids: Sequence[int]) -> str:
    """A sample's token ids as the next generation's document. A byte-level model can end a sample inside a multi-byte
    character or emit bytes that are not UTF-8; decoding writes U+FFFD there, which encodes as three tokens the model
    never produced (an audit found it in 112 of 400 samples of a CPU-default run, doubling the training data's
    ||f - p||^2), so those characters are dropped: the document keeps what decodes."""
    return tok.decode(ids).replace("\ufffd", "")


def _token_split(ctx: Context, texts: list[str], real: list[bool]) -> dict:
    """Tokens of ``texts`` (all, and the real ones) as the theory's ``n_t`` and ``alpha_t`` count them: without the
    EOT that ends each document, which ``p``, ``f_t`` and ``q_t`` leave out too (they were counted until
    2026-12-04: ``n_t`` one token per document too large, the theory's risks 1-5 % low; an audit)."""
    eot = ctx.rep.tokenizer.eot_id
    counts = [sum(1 for x in ids if x != eot) for ids in ctx.rep.tokenizer.encode_batch(texts)]
    return {"total": int(sum(counts)), "real": int(sum(c for c, r in zip(counts, real) if r))}


def run_generation(ctx: Context, setting: str, t: int, folder: Path, previous: Generation | None,
                   base: Generation | None, history: list[np.ndarray]) -> Generation:
    """Make generation ``t`` of ``setting`` in ``folder`` (see the module docstring); ``history``: the response
    embeddings of generations ``0..t-1`` of this setting (for the Sigma drift)."""
    from llm_bridge import diversity as div
    from llm_bridge.embedding_metrics import sigma_monitor, update_tracks

    cfg, rep, tok = ctx.config, ctx.rep, ctx.rep.tokenizer
    spec = SETTINGS[setting]
    texts, real, record = new_documents(ctx, setting, t, previous)
    all_texts = (previous.all_texts if spec.accumulate and previous is not None else []) + texts
    start = {"scratch": ctx.init, "base": None if base is None else base.params,
             "carry": None if previous is None else previous.params}[spec.init if t > 0 else "scratch"]
    params, losses = train_params(ctx.skeleton, all_texts, start, cfg, derive_seed(cfg.seed, rep.index, setting, t,
                                                                                   "train"))
    folder.mkdir(parents=True, exist_ok=True)
    nt.save_params(folder, cfg.steps, params)
    atomic_write_json(folder / "train.json", {"texts": texts, "real": real})
    model = NanoGPT(ctx.skeleton.config, tok, params, name=f"{setting}-gen{t}")

    ppl = model.perplexity(rep.held_out, progress=False)
    sample_ids = model.generate_ids([""] * cfg.num_samples, Sampling(cfg.sample_tokens, cfg.temperature),
                                    seed=derive_seed(cfg.seed, rep.index, setting, t, "samples"), progress=False)
    samples = [document_text(tok, ids) for ids in sample_ids]
    atomic_write_json(folder / "samples.json", samples)
    bank = [p for p in rep.prompts for _ in range(cfg.responses)]
    # the bank is frozen: its cut prompts are said at generation 0, not again at every generation (9 times in 2
    # minutes; a user trial, 2026-12-06)
    with _checks.ignoring_warnings(UserWarning, r".*prompts are longer than the") if t > 0 else nullcontext():
        responses = model.generate(bank, Sampling(cfg.response_tokens, cfg.temperature),
                                   seed=derive_seed(cfg.seed, rep.index, "bank"), progress=False)
    atomic_write_json(folder / "responses.json", [{"prompt": p, "text": r} for p, r in zip(bank, responses)])
    # the responses alone (seed 002 App. C: "embed responses with the frozen encoder"): with the prompt prepended, a
    # generator answering every prompt alike kept semantic diversity 0.52 from the prompts (a user trial)
    emb = ctx.encoder.encode(responses, progress=False)
    atomic_savez(folder / "embeddings.npz", {"embeddings": emb})

    monitor = sigma_monitor(len(bank), emb.shape[1], seed=derive_seed(cfg.seed, rep.index, "sigma"))
    for e in [*history, emb]:
        monitor, sigma = update_tracks(monitor, e)
    report = div.diversity(responses, embeddings=emb, ngram_orders=(2,), seed=derive_seed(cfg.seed, rep.index))
    q, m_tokens = unigram(sample_ids, tok.vocab_size, tok.eot_id)
    f, _ = unigram(tok.encode_batch(all_texts), tok.vocab_size, tok.eot_id)
    p = rep.reference
    raw = float(np.sum((q - p) ** 2))
    new_tokens = _token_split(ctx, texts, real)
    metrics = {
        "setting": setting, "generation": t, "repetition": rep.index,
        "data": {**record, "documents": len(texts), "real_documents": int(sum(real)),
                 "training_documents": len(all_texts), "new_tokens": new_tokens},
        "train_loss_final": float(np.mean(losses[-max(1, len(losses) // 10):])),
        "held_out_loss": float(ppl.nll.sum() / ppl.tokens.sum()), "held_out_perplexity": ppl.corpus,
        "unigram": {"sample_tokens": m_tokens, "distance": raw,
                    "distance_corrected": raw - (1.0 - float(np.sum(q * q))) / max(m_tokens - 1, 1),
                    "training_distance": float(np.sum((f - p) ** 2))},
        "sigma": sigma,
        "diversity": {k: report.as_dict()[k] for k in ("distinct_2", "hhi", "self_bleu_diversity", "semantic")},
        "empty_samples": int(sum(not s for s in samples)),
    }
    atomic_write_json(folder / "metrics.json", metrics)
    return Generation(folder, params, texts, real, all_texts, samples, emb, metrics)


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------

METRIC_PATHS = {
    "held_out_perplexity": ("held_out_perplexity",),
    "unigram_distance": ("unigram", "distance_corrected"),
    "unigram_distance_raw": ("unigram", "distance"),
    "training_unigram_distance": ("unigram", "training_distance"),
    "track2_drift": ("sigma", "delta_u_lln"),
    "track2_cov_drift": ("sigma", "delta_u_cov"),
    "track1_drift": ("sigma", "delta_gain"),
    "distinct_2": ("diversity", "distinct_2"),
    "hhi": ("diversity", "hhi"),
    "self_bleu_diversity": ("diversity", "self_bleu_diversity"),
    "semantic_diversity": ("diversity", "semantic"),
    "train_loss": ("train_loss_final",),
}
# What each curve is (curves.json / curves.nc; 12 of 13 had no description, so unigram_distance against its _raw
# twin, track2_cov_drift and train_loss were unexplained: a user trial, 2026-12-06)
METRIC_DESCRIPTIONS = {
    "held_out_perplexity": "perplexity on the real held-out documents (exp of the mean nats per token)",
    "unigram_distance": "||q_t - p||^2 of the samples' unigram frequencies q_t against the real p, less its "
                        "sampling bias (1 - ||q_t||^2) / (m_t - 1) over m_t sample tokens (the unigram proxy)",
    "unigram_distance_raw": "||q_t - p||^2 of the samples' unigram frequencies, without the bias correction",
    "training_unigram_distance": "||f_t - p||^2 of the generation's training data's unigram frequencies f_t",
    "track2_drift": "Sigma Track II drift (delta U_LLN) of the prompt-bank responses' embeddings against generation 0",
    "track2_cov_drift": "Sigma Track II drift of the covariance bound (delta U_cov) against generation 0",
    "track1_drift": "Sigma Track I drift (delta of the gain) against generation 0",
    "distinct_2": "distinct-2 of the prompt-bank responses (distinct bigrams / bigrams)",
    "hhi": "trigram Herfindahl-Hirschman index of the prompt-bank responses (concentration; 1 = one trigram)",
    "self_bleu_diversity": "1 - self-BLEU of the prompt-bank responses",
    "semantic_diversity": "semantic diversity of the prompt-bank responses (mean cosine distance of their embeddings)",
    "train_loss": "training loss (nats per token) averaged over the generation's last tenth of steps",
}


@lru_cache(maxsize=1)
def default_encoder():
    """The packaged all-MiniLM-L6-v2 (:func:`llm_bridge.encoders.minilm_encoder`), loaded once per process."""
    from llm_bridge.encoders import minilm_encoder

    return minilm_encoder()


def _gen_folder(rep_folder: Path, setting: str, t: int) -> Path:
    return rep_folder / "gen00" if t == 0 else rep_folder / setting / f"gen{t:02d}"


def generation_run_folder(folder: str | Path) -> tuple[Path, Path] | None:
    """(run folder, repetition folder) of a finished generation folder of a recursive-train run
    (``RUN/rep<r>/gen00`` or ``RUN/rep<r>/<setting>/gen<tt>``, with its ``metrics.json``), or None for any other
    path."""
    folder = Path(folder).expanduser()
    if not (folder.name.startswith("gen") and folder.name[3:].isdigit() and (folder / "metrics.json").is_file()):
        return None
    rep = folder.parent if folder.name == "gen00" else folder.parent.parent
    run = rep.parent
    if not (rep.name.startswith("rep") and rep.name[3:].isdigit() and (rep / bpe.FILENAME).is_file()
            and (run / "config.json").is_file()):
        return None
    return run, rep


def load_generation_model(folder: str | Path, *, step: int | None = None) -> NanoGPT:
    """The nanoGPT one generation of a recursive-train run trained (``RUN/rep<r>/gen00`` or
    ``RUN/rep<r>/<setting>/gen<tt>``): its parameters, the run's model sizes and the repetition's tokenizer, as
    :meth:`NanoGPT.load` gives a training run's model (``NanoGPT.load`` and ``nanogpt sample`` take such a folder
    too). A folder that is not a finished generation is a ValueError naming it."""
    folder = local_path("folder", folder)
    found = generation_run_folder(folder)
    if found is None:
        raise ValueError(f"{str(folder)!r} is not a finished generation of a recursive-train run (RUN/rep<r>/gen00 "
                         "or RUN/rep<r>/<setting>/gen<tt> with its metrics.json)")
    run, rep = found
    saved = read_json(run / "config.json")["config"]
    tokenizer = bpe.TextTokenizer.load(rep)
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=saved["context_length"],
                    num_layers=saved["num_layers"], num_heads=saved["num_heads"], dim=saved["dim"],
                    dropout=saved["dropout"], dtype=saved["dtype"])
    abstract = nnx.eval_shape(lambda: init_params(cfg))
    got_step, params = nt.restore_params(folder, abstract, step=step)
    where = folder.name if folder.name == "gen00" else f"{folder.parent.name}-{folder.name}"
    return NanoGPT(cfg, tokenizer, committed(params), name=f"recursive-train:{rep.name}-{where}", step=got_step)


def check_config_matches(run: RunFolder, config: RecursiveConfig) -> None:
    """Write ``config.json`` for a new run; for an existing one, refuse a different configuration."""
    record = asdict(config)
    if not config.reserved_classifier_docs:
        # Without a filtered setting no classifier documents are set aside (before 2026-12-05 they were, so the fresh
        # pool started classifier_docs later): recorded, so that a run begun the old way is refused, not mixed.
        record["classifier_docs_reserved"] = 0
    run.start(record)


def run(folder: str | Path, config: RecursiveConfig = RecursiveConfig(), *, encoder=None, until: int | None = None,
        progress: bool | None = None) -> dict | None:
    """Run (or resume) the whole experiment in ``folder``; returns the results (``results.json``'s content), or
    None when ``until`` (generations made in this call) stopped it early.

    Generations already finished (``metrics.json`` present) are loaded, half-written ones deleted and redone, so
    a resumed run ends with the same files as an uninterrupted one.
    """
    if not isinstance(config, RecursiveConfig):
        raise ValueError(f"config must be a RecursiveConfig, got {type(config).__name__}")
    if until is not None:  # (0 made a run folder and stopped at once: the nanoGPT's --until refuses it; a user trial)
        _checks.positive_int("until", until)
    docs = load_real_documents(config)
    if len(docs) < config.documents_needed():
        raise ValueError(f"the source holds {len(docs)} documents but the configuration needs "
                         f"{config.documents_needed()} (held_out_docs {config.held_out_docs} + classifier_docs "
                         f"{config.reserved_classifier_docs} + the largest fresh-pool demand n0 + sum alpha_t n_t); "
                         "lower n0, n, alpha or generations" + (", or classifier_docs (the filtered setting's)"
                                                                 if config.reserved_classifier_docs else ""))
    out = RunFolder.create("recursive-train", folder)
    check_config_matches(out, config)
    encoder = default_encoder() if encoder is None else encoder
    made = 0
    total = config.repetitions * (1 + len(config.settings) * config.generations)
    records: dict[tuple[int, str, int], dict] = {}
    references: dict[int, np.ndarray] = {}
    with bar(total, "recursive training", unit="generation", disable=None if progress is None else not progress) as b:
        for r in range(config.repetitions):
            rep = prepare_repetition(config, docs, r, out.path / f"rep{r}", encoder)
            references[r] = rep.reference
            cfg_model = config.gpt_config(rep.tokenizer.vocab_size)
            skeleton = NanoGPT(cfg_model, rep.tokenizer, init_params(cfg_model, derive_seed(config.seed, r, "init")))
            ctx = Context(config, rep, encoder, skeleton, skeleton.params)

            def produce(setting: str, t: int, previous, base, history) -> Generation | None:
                nonlocal made
                folder = _gen_folder(rep.folder, setting, t)
                if (folder / "metrics.json").is_file():
                    gen = load_generation(folder, skeleton, previous, SETTINGS[setting].accumulate)
                else:
                    if until is not None and made >= until:
                        return None
                    if folder.exists():
                        shutil.rmtree(folder)
                    gen = run_generation(ctx, setting, t, folder, previous, base, history)
                    made += 1
                b.update(1)
                return gen

            gen0 = produce(config.settings[0], 0, None, None, [])
            if gen0 is None:
                return None
            for setting in config.settings:
                records[(r, setting, 0)] = gen0.metrics
                previous, history = gen0, [gen0.embeddings]
                for t in range(1, config.generations + 1):
                    previous = produce(setting, t, previous, gen0, history)
                    if previous is None:
                        return None
                    history.append(previous.embeddings)
                    records[(r, setting, t)] = previous.metrics
    results = summarise(config, records, references)
    atomic_write_json(out.path / "results.json", results)
    arrays = {name: np.asarray(results["curves"][name], dtype=np.float64) for name in METRIC_PATHS}
    arrays["theory_risk"] = np.asarray(results["theory"]["risk"], dtype=np.float64)
    shape = arrays["theory_risk"].shape
    out.save_arrays(arrays, {k: ("setting", "repetition", "generation") for k in arrays},
                    {**METRIC_DESCRIPTIONS,
                     "theory_risk": "multinomial risk recurrence for each repetition's token schedules"},
                    filename="curves.npz",  # (labelled: ds.sel(setting="fixed"); positions only before)
                    coords={"setting": list(config.settings), "repetition": np.arange(shape[1]),
                            "generation": np.arange(shape[2])})
    plot(out, results)
    out.finish({"settings": list(config.settings), "final": results["final"]})
    return results


def _get(metrics: dict, path: tuple[str, ...]) -> float:
    v: Any = metrics
    for k in path:
        v = v[k]
    return math.nan if v is None else float(v)


def theory_schedule(config: RecursiveConfig, setting: str, records: dict, rep: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_t, n_t) in tokens of the new data (before the filter) of each generation of one repetition."""
    alpha, n = [], []
    for t in range(config.generations + 1):
        data = records[(rep, setting, t)]["data"]
        tokens = data.get("candidate_tokens", data["new_tokens"])
        alpha.append(tokens["real"] / tokens["total"] if t else 1.0)
        n.append(tokens["total"])
    return np.asarray(alpha), np.asarray(n, dtype=np.float64)


def theory_risk(config: RecursiveConfig, setting: str, records: dict, rep: int, p: np.ndarray
                ) -> tuple[np.ndarray, dict]:
    """The multinomial recurrence for one repetition's schedules (replace, accumulate or, with the measured mean
    type-I/II errors, filter), and the errors used."""
    alpha, n = theory_schedule(config, setting, records, rep)
    spec = SETTINGS[setting]
    if spec.filtered:
        errs = [records[(rep, setting, t)]["data"]["filter"] for t in range(1, config.generations + 1)]
        a = float(np.mean([e["type1"] for e in errs]))
        b = float(np.mean([e["type2"] for e in errs]))
        return multinomial.filter_risk(p, alpha, n, min(a, 0.999), min(b, 0.999)), {"type1": a, "type2": b}
    if spec.accumulate:
        return multinomial.accumulate_risk(p, alpha, n), {}
    return multinomial.replace_risk(p, alpha, n), {}


def summarise(config: RecursiveConfig, records: dict, references: dict[int, np.ndarray]) -> dict:
    """Curves (setting, repetition, generation) of every metric, the multinomial theory beside them (``references``:
    each repetition's real unigram distribution ``p``), finals with their spread over repetitions."""
    settings, reps, gens = config.settings, config.repetitions, config.generations + 1
    curves = {name: [[[_get(records[(r, s, t)], path) for t in range(gens)] for r in range(reps)]
                      for s in settings] for name, path in METRIC_PATHS.items()}
    risk, filter_info, final = [], {}, {}
    for i, s in enumerate(settings):
        got = [theory_risk(config, s, records, r, references[r]) for r in range(reps)]
        th = np.asarray([g[0] for g in got])
        risk.append(th.tolist())
        if SETTINGS[s].filtered:
            errs = [g[1] for g in got]
            filter_info[s] = {"per_repetition": errs, "type1_mean": float(np.mean([e["type1"] for e in errs])),
                              "type2_mean": float(np.mean([e["type2"] for e in errs]))}
        final[s] = {}
        for name in ("held_out_perplexity", "unigram_distance", "training_unigram_distance", "track2_drift",
                     "track1_drift", "distinct_2", "hhi", "self_bleu_diversity", "semantic_diversity"):
            arr = np.asarray(curves[name][i])
            final[s][name] = {"gen0_mean": float(np.mean(arr[:, 0])), "last_mean": float(np.mean(arr[:, -1])),
                              "last_min": float(np.min(arr[:, -1])), "last_max": float(np.max(arr[:, -1]))}
        meas = np.asarray(curves["unigram_distance"][i])
        final[s]["theory_risk"] = {"gen0_mean": float(np.mean(th[:, 0])), "last_mean": float(np.mean(th[:, -1]))}
        final[s]["theory_ratio_last"] = float(np.mean(th[:, -1] / th[:, 0]))
        final[s]["unigram_ratio_last"] = float(np.mean(meas[:, -1] / meas[:, 0]))
    schedules_used = {s: [[a.tolist() for a in theory_schedule(config, s, records, r)] for r in range(reps)]
                      for s in settings}
    return {"settings": list(settings), "generations": gens, "repetitions": reps, "curves": curves,
            "theory": {"risk": risk, "filter_errors": filter_info, "schedules_alpha_n_tokens": schedules_used,
                       "s": [float(1.0 - np.sum(references[r] ** 2)) for r in range(reps)],
                       "vocab_size": int(len(references[0]))},
            "final": final}


# ----------------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------------

PANELS = (("held_out_perplexity", "held-out perplexity (real text)"),
          ("unigram_distance", "||q_t - p||^2, model samples (noise removed)"),
          ("track2_drift", "Sigma Track II drift (delta U_LLN)"),
          ("track1_drift", "Sigma Track I drift (delta G_I)"),
          ("distinct_2", "distinct-2 of responses"),
          ("hhi", "trigram HHI of responses"),
          ("self_bleu_diversity", "1 - self-BLEU of responses"),
          ("semantic_diversity", "semantic diversity of responses"))


def _band(ax, values: np.ndarray, color, label: str, style: str = "o-") -> None:
    """Mean over repetitions (rows) with a min-max band."""
    import matplotlib.ticker
    g = np.arange(values.shape[1])
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.plot(g, np.nanmean(values, axis=0), style, color=color, ms=3, lw=1.3, label=label)
    if values.shape[0] > 1:
        ax.fill_between(g, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color, alpha=0.15, lw=0)


def plot(out: RunFolder, results: dict) -> None:
    """``recursive_train.png`` (every per-generation metric, each setting's mean over repetitions with its
    min-max band) and ``theory.png`` (the multinomial recurrence beside the measured unigram distances)."""
    from collapse_jax.results import pyplot

    plt = pyplot()

    settings, curves = results["settings"], results["curves"]
    colors = {s: f"C{i}" for i, s in enumerate(settings)}
    reps = results["repetitions"]
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (name, title) in zip(axes.flat, PANELS):
        for i, s in enumerate(settings):
            _band(ax, np.asarray(curves[name][i], dtype=float), colors[s], s)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=len(settings), fontsize=8,
               frameon=False)  # (under the panels: in the first it covered the curves)
    fig.suptitle(f"Recursive training of the nanoGPT: mean of {reps} repetitions, band = min-max", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out.save_figure(fig, "recursive_train.png")
    plt.close(fig)

    risk = results["theory"]["risk"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for i, s in enumerate(settings):
        th = np.asarray(risk[i], dtype=float)
        _band(axes[0], th, colors[s], f"{s}: theory r_t", "-")
        _band(axes[0], np.asarray(curves["training_unigram_distance"][i], dtype=float), colors[s],
              f"{s}: training data", "x:")
        _band(axes[1], np.asarray(curves["unigram_distance"][i], dtype=float), colors[s], s, "o:")
        _band(axes[2], th / th[:, :1], colors[s], f"{s}: theory", "-")
        meas = np.asarray(curves["unigram_distance"][i], dtype=float)
        _band(axes[2], meas / meas[:, :1], colors[s], f"{s}: model samples", "o:")
    axes[0].set_title("multinomial risk r_t (line) and ||f_t - p||^2 of the training data (x)", fontsize=9)
    axes[1].set_title("||q_t - p||^2 of the model's samples (sampling noise removed)", fontsize=9)
    axes[2].set_title("relative to generation 0: r_t / r_0 (line), d_t / d_0 of the samples (o)", fontsize=9)
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    # one legend under the panels (in the first it covered the curves), colours for the settings and the line
    # styles apart ("dotted + x = training data" was read for panel 3's dotted o lines, the samples; user trials,
    # 2026-12-06; the middle panel's samples were solid, the legend's theory style: a figure trial, 2026-12-06)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[s], lw=2, label=s) for s in settings]
    handles += [Line2D([], [], color="0.3", ls="-", label="theory r_t"),
                Line2D([], [], color="0.3", ls=":", marker="x", ms=4, label="training data (left)"),
                Line2D([], [], color="0.3", ls=":", marker="o", ms=3, label="model samples (middle, right)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Unigram proxy against the multinomial theory (K = {results['theory']['vocab_size']} tokens)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out.save_figure(fig, "theory.png")
    plt.close(fig)
