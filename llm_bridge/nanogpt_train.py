"""Training the nanoGPT: data, the jitted AdamW step, held-out evaluation, Orbax checkpoints and exact resume.

A run folder holds ``config.json`` (model, training and data configuration, tokenizer file, versions),
``tokenizer.json``, ``checkpoints/<step>/`` (Orbax: ``params`` and ``train_state`` = optimiser state, step,
schedule length and elapsed time; ``digest``: the SHA-256 of each), ``metrics.json`` (training loss per step,
held-out loss and perplexity per evaluation; rewritten atomically just before each checkpoint, so it holds at least
the rows of every step a checkpoint has passed), ``loss.png`` and ``manifest.json`` (written last: the run
finished).

Reproducibility: the batch of step s is drawn with ``fold_in(fold_in(key(seed), 0), s)`` and its dropout with
``fold_in(fold_in(key(seed), 1), s)``; the learning rate of step s is the schedule at s + 1. Nothing else carries
state from step to step but the parameters and the optimiser state, both checkpointed, so a run resumed from a
checkpoint replays the remaining steps exactly (bitwise on CPU).

Checkpoints: Orbax writes each step to a temporary folder and renames it when complete, so a killed run leaves no
half-written step that looks finished. A step that fails to restore (a truncated or missing file, arrays that do
not match the SHA-256 saved with them: bytes changed in place, which Orbax itself does not notice, or a digest
missing from a step written with one: :func:`written_with_digest`) raises
:class:`CheckpointError` naming its folder; resuming then warns and falls back to the previous step, which Orbax
keeps (``keep_checkpoints`` >= 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from collapse_jax import _checks
from collapse_jax.progress import bar
from collapse_jax.replicates import root_key
from collapse_jax.results import RunFolder, atomic_write_json, lock_folder, read_json, saved_before_stopping
from llm_bridge import bpe
from llm_bridge.encoders import require
from llm_bridge.generators import check_finite_loss, check_texts, weights_diverged
from llm_bridge.nanogpt import GPTConfig, NanoGPT, committed, mean_nll_hidden, without_x64
from llm_bridge.nanogpt_config import (DataConfig, ModelSpec, TrainConfig,  # noqa: F401 (re-exported)
                                      check_training_fits, vocab_bound)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
DATA_KEY, DROPOUT_KEY = 0, 1          # fold_in(key(seed), .) streams; 2 initialises the parameters


class CheckpointError(ValueError):
    """A checkpoint step folder that does not restore (corrupt, truncated or partial)."""


def write_run_config(folder: Path, config: dict[str, Any]) -> None:
    RunFolder(Path(folder)).write_config(config)


def read_run_config(folder: str | os.PathLike, what: str = "model folder") -> dict[str, Any]:
    """``config.json``'s configuration, or a ValueError naming the folder or file that is missing or unreadable
    (``what``: how the message calls the folder, e.g. ``"run folder"`` where a training run is resumed)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        kinds = " (a training run folder or a NanoGPT.save folder)" if what == "model folder" else ""
        raise ValueError(f"{what} {str(folder)!r} is a file, not a {what}{kinds}")
    if not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{what} {str(folder)!r} holds no {CONFIG_FILE}; it is not a nanoGPT run")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not a nanoGPT configuration ({exc!r})") from None
    if isinstance(raw, dict) and "config" not in raw and ("model_type" in raw or "architectures" in raw):
        # (a Hugging Face folder read "not a nanoGPT configuration (KeyError('config'))"; a user trial, 2026-12-07)
        kind = raw.get("model_type") or "a transformers config.json"
        raise ValueError(f"{what} {str(folder)!r} holds a Hugging Face model ({kind}), not a nanoGPT: load it with "
                         "llm_bridge.hf_causal.hf_causal_lm (llm-web --hf)")
    try:
        saved = raw["config"]
        saved["model"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not a nanoGPT configuration ({exc!r})") from None
    return saved


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def text_documents(path: str | os.PathLike, what: str = "data path") -> list[str]:
    """Paragraphs separated by blank lines (a line of spaces or tabs is blank too; whitespace inside a paragraph is
    collapsed to single spaces) of a ``.txt`` file, or of every ``.txt`` file in a folder (sorted by relative path,
    recursive). (Only an exact ``"\\n\\n"`` split before 2026-12-05: a line of spaces or Windows line ends joined
    paragraphs into one document; a user trial.) ``what`` names the path in messages (bytes that are not UTF-8
    are replaced with a warning: :func:`llm_bridge.corpus.read_text_file`)."""
    from llm_bridge.corpus import read_text_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    files = sorted(path.rglob("*.txt"), key=lambda p: p.relative_to(path).as_posix()) if path.is_dir() else [path]
    if path.is_dir():  # (not the checkpoints' own files, Orbax's commit_success.txt: read as training documents in
        # a folder holding earlier runs; a user trial, 2026-12-07), nor hidden folders' (.git)
        inner = [p.relative_to(path).parts[:-1] for p in files]
        kept = [f for f, parts in zip(files, inner) if not any(q == CHECKPOINTS or q.startswith(".") for q in parts)]
        if len(kept) < len(files):
            warnings.warn(f"{what} {str(path)!r}: {len(files) - len(kept)} .txt files inside {CHECKPOINTS}/ or hidden "
                          "folders are not read (run checkpoints' own files)", stacklevel=_checks.user_stacklevel())
        files = kept
    if not files:
        raise ValueError(f"{what} {str(path)!r} is a folder that holds no .txt files")
    docs = []
    for f in files:
        for par in re.split(r"\n[ \t\r\f\v]*\n", read_text_file(f, what)):
            text = " ".join(par.split())
            if text:
                docs.append(text)
    return docs


def load_documents(data: DataConfig) -> list[str]:
    """The documents ``data`` names, in a fixed order."""
    if data.source == "stdlib":
        from llm_bridge import corpus

        return list(corpus.stdlib_corpus(corpus.CorpusConfig(unit=data.unit, max_chars=4000)).texts)
    return text_documents(data.source, "source path")  # (named as DataConfig names it: "data path" did not say
    # which option; an audit, 2026-12-07)


def split_documents(docs: Sequence[str], held_out_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): ``round(fraction * n)`` documents (at least 1) drawn by ``default_rng(seed)``, both
    lists in corpus order."""
    if len(docs) < 2:
        raise ValueError(f"the training text must hold at least 2 documents (train and held-out), got {len(docs)}")
    n_held = min(len(docs) - 1, max(1, round(held_out_fraction * len(docs))))
    held = np.zeros(len(docs), bool)
    held[np.random.default_rng(seed).permutation(len(docs))[:n_held]] = True
    return [d for d, h in zip(docs, held) if not h], [d for d, h in zip(docs, held) if h]


def eval_windows(stream: np.ndarray, context: int, count: int) -> np.ndarray:
    """Up to ``count`` windows of ``context + 1`` tokens, evenly spaced over ``stream``: int32 (n, context + 1)."""
    room = len(stream) - context - 1
    if room < 0:
        raise ValueError(f"the held-out text has {len(stream)} tokens, fewer than context_length + 1 = "
                         f"{context + 1}; give more text or a larger held_out_fraction")
    n = min(count, room // context + 1)
    starts = np.round(np.linspace(0, room, n)).astype(np.int64)
    return np.stack([stream[s:s + context + 1] for s in starts]).astype(np.int32)


@without_x64
def mean_window_nll(model: NanoGPT, windows: np.ndarray, batch_size: int) -> float:
    """Mean -log p over every target token of ``windows`` (n, context + 1), in fixed-shape batches."""
    from llm_bridge.nanogpt import _weighted_nll

    batch_size = _checks.positive_int("batch_size", batch_size)
    total, width = 0.0, min(batch_size, len(windows))
    for start in range(0, len(windows), width):
        chunk = windows[start:start + width]
        weights = np.ones((width, windows.shape[1] - 1), np.float32)
        weights[len(chunk):] = 0.0
        chunk = np.concatenate([chunk, np.repeat(windows[:1], width - len(chunk), axis=0)])
        total += float(jnp.sum(_weighted_nll(model.graphdef, model.params, chunk[:, :-1], chunk[:, 1:], weights)))
    return total / (len(windows) * (windows.shape[1] - 1))


# ----------------------------------------------------------------------------------------------------------------
# The optimiser and the train step
# ----------------------------------------------------------------------------------------------------------------


def decay_mask(params):
    """Weight decay on matrices (Linear kernels, embeddings) only: biases and LayerNorm scales are vectors."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """AdamW without its learning rate (:func:`adamw_chain` with ``tc``'s settings)."""
    return adamw_chain(*_hyper(tc))


def _hyper(tc: TrainConfig) -> tuple[float, float, float, float]:
    return tc.grad_clip, tc.beta1, tc.beta2, tc.weight_decay


def adamw_chain(grad_clip: float, beta1: float, beta2: float, weight_decay: float) -> optax.GradientTransformation:
    """Clip the global gradient norm, Adam moments, decoupled weight decay on matrices. The step multiplies the
    result by ``-lr`` (``optax.adamw`` is this chain followed by ``scale_by_learning_rate``), so the schedule is a
    plain input and its length never enters the compiled step."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.scale_by_adam(b1=beta1, b2=beta2, eps=1e-8),
                       optax.add_decayed_weights(weight_decay, mask=decay_mask))


def schedule(tc: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to ``learning_rate`` over ``warmup_steps``, cosine decay to ``min_lr_ratio`` times it
    at ``total_steps``; step s (0-based) uses the value at s + 1. A run no longer than its warm-up is all warm-up
    (it ends at the peak; the trainer warns)."""
    warmup = min(tc.warmup_steps, total_steps)
    return optax.warmup_cosine_decay_schedule(0.0, tc.learning_rate, warmup, max(total_steps, warmup + 1),
                                              tc.learning_rate * tc.min_lr_ratio)


def step_keys(seed: int | jax.Array, step) -> tuple[jax.Array, jax.Array]:
    """(batch key, dropout key) of one step: ``fold_in(fold_in(key(seed), stream), step)``; ``seed`` an integer or
    its key (:func:`collapse_jax.replicates.root_key`, which training passes into its compiled steps: a Python int
    seed would enter them as an int32, refusing seeds from 2**31)."""
    root = root_key(seed)
    return (jax.random.fold_in(jax.random.fold_in(root, DATA_KEY), step),
            jax.random.fold_in(jax.random.fold_in(root, DROPOUT_KEY), step))


def random_windows(key, stream, batch_size: int, length: int, size=None):
    """``batch_size`` windows of ``length`` tokens at uniform random starts in ``stream``: int32 (batch, length).

    ``size`` (a traced int, default ``len(stream)``): only the first ``size`` tokens are drawn from, so streams of
    many lengths, padded to a few bucket lengths, share one compilation."""
    size = stream.shape[0] if size is None else size
    starts = jax.random.randint(key, (batch_size,), 0, size - length + 1, dtype=jnp.int32)
    return jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(stream, s, length))(starts)


def padded_stream(tokens) -> tuple[jax.Array, np.int32]:
    """``(stream, size)``: the int32 tokens zero-padded to a power of two (at least 1024) and their real count, for
    the ``size`` argument of :func:`train_step` / :func:`train_steps`. Windows are drawn from the first ``size``
    tokens only (:func:`random_windows`), so the numbers are those of the unpadded stream, and streams of different
    lengths in one bucket (the base models of an LLM network, each on its own part of a corpus; fine-tuning on each
    generation's texts) share one compilation instead of compiling the step again for every length."""
    tokens = np.asarray(tokens, np.int32)
    padded = np.zeros(1 << max(10, (len(tokens) - 1).bit_length()), np.int32)
    padded[:len(tokens)] = tokens
    return jnp.asarray(padded), np.int32(len(tokens))


def _step_body(graphdef, hyper: tuple[float, float, float, float], batch_size: int, seq_len: int) -> Callable:
    """The un-jitted step of :func:`train_step`."""
    tx = adamw_chain(*hyper)

    def step(params, opt_state, stream, seed, step, lr, size=None):
        data_key, dropout_key = step_keys(seed, step)
        batch = random_windows(data_key, stream, batch_size, seq_len + 1, size)

        def loss_fn(p):
            return mean_nll_hidden(graphdef, p, batch[:, :-1], batch[:, 1:], deterministic=False,
                                   dropout_key=dropout_key)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


@lru_cache(maxsize=16)
def train_step(graphdef, hyper: tuple[float, float, float, float], batch_size: int, seq_len: int) -> Callable:
    """The jitted step ``(params, opt_state, stream, seed, step, lr, size=None) -> (params, opt_state, loss)``.

    Draws ``batch_size`` windows of ``seq_len + 1`` tokens from ``stream`` (its first ``size`` tokens when given,
    see :func:`random_windows`) with the step's key, next-token
    cross-entropy with dropout, one update of :func:`adamw_chain` (``hyper``) scaled by ``-lr``. ``params`` and
    ``opt_state`` are donated.
    """
    return jax.jit(_step_body(graphdef, hyper, batch_size, seq_len), donate_argnums=(0, 1))


@lru_cache(maxsize=16)
def train_steps(graphdef, hyper: tuple[float, float, float, float], batch_size: int, seq_len: int) -> Callable:
    """Several steps in one compiled call: ``(params, opt_state, stream, seed, first_step, lrs, size=None) ->
    (params, opt_state, losses)`` runs steps ``first_step, first_step + 1, ...`` with learning rates ``lrs`` (one per
    step; its length is the number of steps, one compilation per length) as a ``lax.scan`` over the step of
    :func:`train_step`, and returns each step's loss.

    Why: XLA:CPU allocates a call's temporary buffers afresh for every call (one ``mmap`` of 693 MB per ``seed003``
    step, batch 32, freed after it); the first touch of those pages cost 0.36-0.40 CPU-s of page faults per step on
    the 2-core machine (181,000 minor faults per step), a fifth of the step's CPU time. Inside one call the loop
    reuses them: 8 steps per call cut the faults 8-fold (docs/nanogpt.md, speed)."""
    body = _step_body(graphdef, hyper, batch_size, seq_len)

    def steps(params, opt_state, stream, seed, first_step, lrs, size=None):
        def one(carry, x):
            p, o, loss = body(*carry, stream, seed, x[0], x[1], size)
            return (p, o), loss

        first = jnp.asarray(first_step, jnp.int32)
        (params, opt_state), losses = jax.lax.scan(
            one, (params, opt_state), (first + jnp.arange(lrs.shape[0], dtype=jnp.int32), lrs))
        return params, opt_state, losses

    return jax.jit(steps, donate_argnums=(0, 1))


def _copy(tree):
    return committed(jax.tree.map(jnp.copy, tree))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


def _ocp():
    return require("orbax.checkpoint")


def checkpoint_manager(folder: Path, keep: int | None = None):
    """Orbax manager of ``folder/checkpoints``: synchronous saves; a save keeps the newest ``keep`` steps (None:
    every step; training passes its ``keep_checkpoints``)."""
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
    return ocp.CheckpointManager(Path(folder).absolute() / CHECKPOINTS, options=options)


def save_params(folder: Path, step: int, params) -> None:
    """A checkpoint of the parameters alone (what :meth:`NanoGPT.save` writes); the folder's other steps are kept."""
    check_checkpoint_space(folder, {"params": params}, step)
    with checkpoint_manager(folder) as mngr:
        mngr.save(step, args=save_args({"params": params}), force=True)


# Each checkpoint also holds the SHA-256 of every item's arrays (item "digest"), checked on restore: a file damaged
# in place (bytes changed, the size kept) restores without any error from Orbax/TensorStore, with wrong values.
DIGEST = "digest"
STEP_METADATA = "_CHECKPOINT_METADATA"      # Orbax's, in every step folder: names the items written with the step


def tree_digest(tree) -> str:
    """SHA-256 (hex) of a tree's arrays in leaf order: each leaf's dtype, shape and bytes."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_checkpoint_space(folder: Path, items: dict[str, Any], step: int) -> None:
    """A ValueError naming the folder where the free space is short of the checkpoint's arrays (plus a margin): a full
    disk failed inside Orbax / TensorStore with ~200 lines of tracebacks from their threads before the one-line error
    (a user trial, 2026-12-06)."""
    need = int(1.25 * sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(items))) + 2**18
    place, free = _checks.free_disk_bytes(folder)
    if free < need:
        raise ValueError(f"out: the checkpoint of step {step} needs about {_checks.bytes_text(need)}, but "
                         f"{_checks.bytes_text(free)} is free under {str(place)!r}; free some space, then continue "
                         "with --resume (the steps checkpointed before are kept)")


def save_args(items: dict[str, Any]):
    """Orbax arguments saving ``items`` (name -> tree) and their digests."""
    ocp = _ocp()
    return ocp.args.Composite(**{k: ocp.args.StandardSave(v) for k, v in items.items()},
                              **{DIGEST: ocp.args.JsonSave({k: tree_digest(v) for k, v in items.items()})})


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def written_with_digest(step_folder: Path) -> bool:
    """Whether a checkpoint step folder was written with a digest, so that it must hold one: every step written
    since 2026-12-02. Orbax's ``_CHECKPOINT_METADATA`` in the step folder names the items written with it; only a
    readable one that names no ``digest`` item marks an older checkpoint (read without the check, as before). A
    deleted ``digest/`` thus makes the step damaged, not unchecked."""
    try:
        return DIGEST in json.loads((Path(step_folder) / STEP_METADATA).read_text())["item_handlers"]
    except (OSError, ValueError, KeyError, TypeError):       # missing or unreadable: assume the current format
        return True


def _restore_step(mngr, step: int, items: dict[str, Any]) -> dict[str, Any]:
    ocp = _ocp()
    path = mngr.directory / str(step)
    digested = written_with_digest(path)
    if digested and not (path / DIGEST).is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} could not be restored (its {DIGEST}/, the SHA-256 of its "
                              "arrays written with it, is missing: the arrays cannot be checked)")
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(_abstract(v)) for k, v in items.items()},
                              **({DIGEST: ocp.args.JsonRestore()} if digested else {}))
    try:
        restored = mngr.restore(step, args=args)
        got = {k: restored[k] for k in items}
        digests = restored[DIGEST] if digested else {}
        unlisted = [k for k in items if digested and k not in digests]
    except Exception as exc:  # noqa: BLE001 - Orbax/TensorStore raise many types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} could not be restored "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from exc
    if unlisted:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be restored (its {DIGEST} has no SHA-256 for "
                              f"{', '.join(unlisted)})")
    bad = [k for k in items if k in digests and tree_digest(got[k]) != digests[k]]
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be restored (the arrays of {', '.join(bad)} do "
                              "not match the SHA-256 written with them: a file was damaged after saving)")
    return got


def restore_latest(folder: Path, items: dict[str, Any], *, step: int | None = None, set_aside: bool = False
                   ) -> tuple[int, dict[str, Any]]:
    """``(step, restored items)`` from the newest checkpoint of ``folder`` that restores (or exactly ``step``).

    ``items`` maps item names to example trees (shapes and dtypes). A newer step that fails is skipped with a
    warning naming it (``set_aside``: and moved to ``checkpoints-corrupt/<step>``, or ``<step>.1``, ``<step>.2``
    ... when that step was set aside before, out of the way of the steps a
    resumed run writes again); a ``step`` asked for that fails raises :class:`CheckpointError`; no restorable step
    raises a ValueError naming the folder.
    """
    folder = Path(folder)
    if not (folder / CHECKPOINTS).is_dir():  # (opening a manager would create it)
        raise ValueError(f"{str(folder)!r} holds no checkpoint (no {CHECKPOINTS}/ folder)")
    with checkpoint_manager(folder) as mngr:          # (keeps every step: reading removes nothing)
        steps = sorted(mngr.all_steps(), reverse=True)
        if step is not None:
            if step not in steps:
                raise ValueError(f"{str(folder / CHECKPOINTS)!r} has no checkpoint at step {step}; it has {steps}")
            return step, _restore_step(mngr, step, items)
        failures = []
        for s in steps:
            try:
                restored = _restore_step(mngr, s, items)
            except CheckpointError as exc:
                failures.append(f"step {s}: {exc}")
                if s != steps[-1]:  # (it said "using the previous checkpoint" of the last one too; an audit)
                    warnings.warn(f"{exc}; using the previous checkpoint instead",
                                  stacklevel=_checks.user_stacklevel())
                continue
            for bad in (b for b in steps if b > s and set_aside):
                target = folder / f"{CHECKPOINTS}-corrupt" / str(bad)
                target.parent.mkdir(exist_ok=True)
                copies = 1
                while target.exists():  # the same step set aside before (a resumed run wrote it again)
                    target = target.with_name(f"{bad}.{copies}")
                    copies += 1
                os.replace(mngr.directory / str(bad), target)
                warnings.warn(f"moved the checkpoint that did not restore to {str(target)!r}",
                              stacklevel=_checks.user_stacklevel())
            return s, restored
    # (why each failed, here: the reason was only in a warning before; an audit, 2026-12-07)
    raise ValueError(f"{str(folder)!r} holds no checkpoint that restores (steps tried: {steps}; "
                     f"{'; '.join(failures) or 'none'})")


def has_checkpoints(folder: Path) -> bool:
    """Whether ``folder/checkpoints`` holds a finished step (Orbax's unfinished ones carry a ``.tmp`` suffix)."""
    ckpt = Path(folder) / CHECKPOINTS
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def restore_params(folder: Path, abstract_params, *, step: int | None = None):
    """(step, parameters) of the newest restorable checkpoint (see :func:`restore_latest`)."""
    step, got = restore_latest(folder, {"params": abstract_params}, step=step)
    return step, got["params"]


# ----------------------------------------------------------------------------------------------------------------
# The training run
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a run ended with: the model, its final step, held-out loss/perplexity, training throughput."""

    model: NanoGPT
    step: int
    held_out_loss: float
    held_out_perplexity: float
    tokens_per_second: float | None    # None: no step timed in this session (compilation excluded)
    folder: Path
    stopped_by: str            # "steps", "minutes", "until", or "finished" (resume of a finished run: nothing run)
    metrics: dict = field(repr=False, default_factory=dict)


@dataclass
class _Data:
    train: np.ndarray
    held_out_windows: np.ndarray
    num_docs: tuple[int, int]


def prepare_data(data: DataConfig, tc: TrainConfig, context: int, tokenizer: bpe.TextTokenizer | None
                 ) -> tuple[bpe.TextTokenizer, _Data, str]:
    """(tokenizer, token streams, text hash) of a run: documents split by :func:`split_documents`, the tokenizer
    trained on the training documents (unless given), the training stream and the fixed held-out windows."""
    from llm_bridge.corpus import corpus_hash

    docs = load_documents(data)
    if len(docs) < 2:  # (a user trial, 2026-12-06: "got 1" for one 60,000-word line, naming neither file nor unit)
        raise ValueError(f"--data {data.source!r} must hold at least 2 documents (one to train on, one held out), "
                         f"got {len(docs)}: a document is a paragraph, and paragraphs are separated by blank lines")
    train_docs, held_docs = split_documents(docs, tc.held_out_fraction, tc.seed)
    if tokenizer is None:
        tokenizer = bpe.make_tokenizer(data.tokenizer, train_docs, data.vocab_size)
    train = tokenizer.encode_documents(train_docs)
    if len(train) < context + 2:
        raise ValueError(f"the training text has {len(train)} tokens, fewer than context_length + 2 = "
                         f"{context + 2}; give more text or a shorter context")
    windows = eval_windows(tokenizer.encode_documents(held_docs), context, tc.eval_windows)
    return tokenizer, _Data(train, windows, (len(train_docs), len(held_docs))), corpus_hash(docs)


@without_x64
def train(folder: str | os.PathLike, spec: ModelSpec = ModelSpec(), data: DataConfig = DataConfig(),
          tc: TrainConfig = TrainConfig(), *, until: int | None = None, progress: bool | None = None) -> TrainResult:
    """A new training run in ``folder`` (created, or an empty one; an existing run there is refused: use
    :func:`resume`; so is a folder holding other files, before anything is written).

    ``until``: stop after this step, 1 to ``tc.steps`` (checkpointed, no ``manifest.json``) although the schedule
    spans ``tc.steps``; :func:`resume` continues it.
    """
    started = time.perf_counter()
    folder = Path(folder)
    check_until(until, tc.steps)
    if (folder / CONFIG_FILE).exists():  # ("resume it" was said of finished runs too, where it runs nothing; a user
        # trial, 2026-12-06)
        if (folder / "manifest.json").exists():
            raise ValueError(f"{str(folder)!r} already holds a finished run; choose a new folder")
        raise ValueError(f"{str(folder)!r} already holds an unfinished run; continue it with resume (--resume: its "
                         "saved configuration) or choose a new folder")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out: {str(folder)!r} is a file, not a folder; choose a new or empty folder")
    if folder.is_dir():     # (a tokenizer.json alone: left by a train killed before it wrote its config.json)
        other = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != bpe.FILENAME)
        if other:
            raise ValueError(f"out: {str(folder)!r} is not empty and holds no run (no {CONFIG_FILE}; it holds "
                             f"{', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); choose a new or empty "
                             "folder")
    # sizes and their memory checked before any text is read
    check_training_fits(spec.resolve(vocab_bound(data.tokenizer, data.vocab_size)), tc.batch_size)
    context = spec.resolve(257).context_length
    tokenizer, prepared, text_hash = prepare_data(data, tc, context, None)
    cfg = spec.resolve(tokenizer.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(folder)
    write_run_config(folder, {"model": asdict(cfg), "spec": asdict(spec), "train": asdict(tc), "data": asdict(data),
                              "tokenizer_file": bpe.FILENAME, "tokenizer_kind": tokenizer.kind,
                              "text_hash": text_hash, "documents": {"train": prepared.num_docs[0],
                                                                    "held_out": prepared.num_docs[1]},
                              "tokens": {"train": int(len(prepared.train)),
                                         "held_out_windows": int(len(prepared.held_out_windows))}})
    return _run(folder, cfg, tc, tokenizer, prepared, progress=progress, started=started, until=until)


def check_until(until: int | None, steps: int | None) -> int | None:
    """``until`` (stop after this step) checked: None, or an integer from 1 to the schedule's ``steps`` (any
    integer >= 1 when ``steps`` is None, a time budget's schedule not yet measured); a ValueError otherwise."""
    if until is None:
        return None
    until = _checks.positive_int("until", until)
    if steps is not None and until > steps:
        raise ValueError(f"until must be an integer from 1 to steps = {steps} (the schedule's last step), got {until}")
    return until


def saved_run_data(folder: Path, saved: dict[str, Any], tokenizer: bpe.TextTokenizer, purpose: str) -> _Data:
    """The token streams of the run in ``folder`` (its saved configuration ``saved``), re-made from its training
    text, which must be the text it started with (the saved hash): a ValueError naming the folder and what could
    not be done (``purpose``) otherwise."""
    tc, data = TrainConfig(**saved["train"]), DataConfig(**saved["data"])
    _, prepared, text_hash = prepare_data(data, tc, GPTConfig(**saved["model"]).context_length, tokenizer)
    if text_hash != saved["text_hash"]:
        raise ValueError(f"the training text of {str(folder)!r} ({data.source}) changed since the run started (hash "
                         f"{text_hash[:12]} != {saved['text_hash'][:12]}); it cannot be {purpose}")
    return prepared


@without_x64
def resume(folder: str | os.PathLike, *, until: int | None = None, progress: bool | None = None) -> TrainResult:
    """Continue the run in ``folder`` from its newest checkpoint that restores, with its saved configuration
    (a fresh start when it has none yet). The final parameters equal those of an uninterrupted run. A finished run
    (``manifest.json``) is loaded, not run again, and nothing in it is rewritten (``stopped_by == "finished"``),
    unless its final parameters do not restore: then its last steps are replayed as for an unfinished run. (Its
    optimiser state is not read: nothing trains from it, so a damaged ``train_state`` there goes unnoticed.)"""
    started = time.perf_counter()
    folder = Path(folder)
    saved = read_run_config(folder, "run folder")
    check_until(until, saved.get("train", {}).get("steps"))
    if (folder / "manifest.json").is_file():   # finished: nothing to train, nothing rewritten (unless the final
        metrics = read_json(folder / METRICS_FILE)                          # checkpoint is damaged: replayed below)
        done = metrics["summary"]
        try:
            model = NanoGPT.load(folder, step=done["step"])
        except ValueError:                      # (CheckpointError is one)
            pass
        else:
            loss, ppl = (math.nan if done[k] is None else done[k] for k in ("held_out_loss", "held_out_perplexity"))
            return TrainResult(model, model.step, loss, ppl, None, folder, "finished", metrics)  # (NaN is null)
    # another process resuming the same folder is refused (two ran to the end, racing on the checkpoints' pruning;
    # a user trial, 2026-12-06): the lock recursive-train and the sweeps take, released when the process ends (not
    # taken for a finished run, in which nothing is written)
    lock_folder(folder)
    cfg, tc = GPTConfig(**saved["model"]), TrainConfig(**saved["train"])
    tokenizer = bpe.TextTokenizer.load(folder / saved["tokenizer_file"])
    prepared = saved_run_data(folder, saved, tokenizer, "resumed exactly")
    return _run(folder, cfg, tc, tokenizer, prepared, progress=progress, started=started, until=until,
                resuming=True)


def _train_state(opt_state, step: int = 0, total_steps: int = 0, elapsed: float = 0.0) -> dict:
    """A checkpoint's ``train_state``: the optimiser's state, the step, the run's planned steps and its seconds (the
    same tree is the template a restore reads into)."""
    return {"opt_state": opt_state, "step": np.asarray(step), "total_steps": np.asarray(total_steps),
            "elapsed": np.asarray(elapsed)}


def _checkpoint_seconds(folder: Path, params, opt_state) -> float:
    """Seconds one checkpoint of this state takes: timed by saving it, as the run does, into a scratch folder
    beside the run's checkpoints (removed after)."""
    import shutil

    scratch = folder / ".budget-timing"
    state = _train_state(opt_state)
    check_checkpoint_space(folder, {"params": params, "train_state": state}, 0)
    t0 = time.perf_counter()
    try:
        with checkpoint_manager(scratch, 1) as mngr:
            mngr.save(0, args=save_args({"params": params, "train_state": state}), force=True)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _call_end(step: int, end: int, tc: TrainConfig) -> int:
    """Where a compiled training call from ``step`` stops: after ``steps_per_call`` steps, at the next evaluation or
    checkpoint, or at ``end``."""
    return min(end, step + tc.steps_per_call, (step // tc.eval_every + 1) * tc.eval_every,
               (step // tc.checkpoint_every + 1) * tc.checkpoint_every)


def _call_lengths(total: int, tc: TrainConfig) -> set[int]:
    """The step counts of the compiled calls a run of ``total`` steps makes (each call stops at an evaluation, a
    checkpoint or the end: :func:`_run`'s loop). The calls repeat with the period ``lcm(eval_every,
    checkpoint_every)``: one period and the last partial one are walked, not every call of a long run."""
    period = math.lcm(tc.eval_every, tc.checkpoint_every)
    lengths = set()
    for start, end in ((0, min(total, period)), (total - total % period if total > period else total, total)):
        step = start
        while step < end:
            stop = _call_end(step, end, tc)
            lengths.add(stop - step)
            step = stop
    return lengths


def _steps_for_budget(steps_fn, params, opt_state, stream, size, tc: TrainConfig, budget_left, seconds_per_eval: float,
                      seconds_per_checkpoint: float) -> int:
    """Schedule length for a time budget: time one compiled call of ``tc.steps_per_call`` steps
    (:func:`train_steps`) on copies, then the largest ``total`` whose steps, evaluations, checkpoints and
    compilations of its other call lengths (each timed as the first call's compilation) fit in what
    ``budget_left()`` says is left once this timing is done. (The steps alone were counted before, with the
    timing's own seconds: a 15 s budget planned 1,418 steps and ran 716, its learning rate still at half its peak;
    a user trial.)"""
    p, o = _copy(params), _copy(opt_state)
    lrs = jnp.zeros((tc.steps_per_call,), jnp.float32)
    key = root_key(tc.seed)
    t0 = time.perf_counter()
    p, o, losses = steps_fn(p, o, stream, key, 0, lrs, size)
    losses.block_until_ready()
    t1 = time.perf_counter()
    p, o, losses = steps_fn(p, o, stream, key, 0, lrs, size)
    losses.block_until_ready()
    per_call = time.perf_counter() - t1
    compile_s = max(0.0, t1 - t0 - per_call)
    per_step = per_call / tc.steps_per_call
    seconds = budget_left()

    def cost(total: int) -> float:
        others = len(_call_lengths(total, tc) - {tc.steps_per_call})
        return (total * per_step + (total // tc.eval_every + 1) * seconds_per_eval
                + (total // tc.checkpoint_every + 1) * seconds_per_checkpoint + others * compile_s)

    total = max(1, int(seconds / per_step))
    while total > 1 and cost(total) > seconds:  # (a few rounds: the cost is nearly linear in total)
        total = max(1, min(total - 1, int(total * seconds / cost(total))))
    return total


def _run(folder: Path, cfg: GPTConfig, tc: TrainConfig, tokenizer, prepared: _Data, *, progress, started: float,
         until: int | None, resuming: bool = False) -> TrainResult:
    """The training loop shared by :func:`train` and :func:`resume` (``started``: the caller's clock at entry, for
    the time budget)."""
    run = RunFolder(folder)
    model = NanoGPT.create(cfg, tokenizer, tc.seed, name=f"nanogpt:{folder.name}")
    tx = optimizer(tc)
    model.params, opt_state = committed((model.params, tx.init(model.params)))
    steps_fn = train_steps(model.graphdef, _hyper(tc), tc.batch_size, cfg.context_length)
    stream, size = padded_stream(prepared.train)
    metrics: dict[str, list] = {"train": [], "eval": []}
    start_step, total, elapsed_before = 0, tc.steps, 0.0
    if resuming and has_checkpoints(folder):
        start_step, got = restore_latest(folder, {"params": model.params, "train_state": _train_state(opt_state)},
                                         set_aside=True)
        model.params, state = committed((got["params"], got["train_state"]))
        opt_state, total, elapsed_before = state["opt_state"], int(state["total_steps"]), float(state["elapsed"])
        # (a resume looked like a fresh start until its last line; a user trial, 2026-12-06)
        print(f"nanogpt: resuming {folder} from its checkpoint at step {start_step} of {total}", file=sys.stderr)
        if (folder / METRICS_FILE).exists():
            old = read_json(folder / METRICS_FILE)  # (missing or damaged: a ValueError naming it)
            metrics = {"train": [r for r in old["train"] if r[0] < start_step],
                       "eval": [r for r in old["eval"] if r["step"] <= start_step]}
        elif start_step > 0:  # the parameters still end as an uninterrupted run's; the history before is gone
            warnings.warn(f"{str(folder / METRICS_FILE)!r} is missing: resuming at step {start_step}, the loss and "
                          f"held-out history of steps 0-{start_step - 1} is lost (metrics.json and loss.png will "
                          "start there)", stacklevel=_checks.user_stacklevel())
    mngr = checkpoint_manager(folder, tc.keep_checkpoints)     # after restoring: corrupt steps are set aside
    budget = None if tc.minutes is None else tc.minutes * 60.0

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def evaluate(step: int) -> dict:
        t0 = time.perf_counter()
        loss = mean_window_nll(model, prepared.held_out_windows, tc.batch_size)
        row = {"step": step, "loss": loss, "perplexity": math.exp(loss), "elapsed_s": elapsed(),
               "eval_s": time.perf_counter() - t0}
        metrics["eval"] = [r for r in metrics["eval"] if r["step"] != step] + [row]
        return row

    def checkpoint(step: int) -> None:
        state = _train_state(opt_state, step, total, elapsed())
        # metrics first: a process killed between the two leaves rows past the newest checkpoint, which a resume
        # drops and writes again, never a checkpoint whose steps' rows are missing
        atomic_write_json(folder / METRICS_FILE, metrics)
        items = {"params": model.params, "train_state": state}
        check_checkpoint_space(folder, items, step)
        mngr.save(step, args=save_args(items), force=True)

    if start_step == 0:
        first = evaluate(0)
        if total is None:
            total = _steps_for_budget(steps_fn, model.params, opt_state, stream, size, tc,
                                      lambda: budget - elapsed(), first["eval_s"],
                                      _checkpoint_seconds(folder, model.params, opt_state))
    if start_step == 0 and tc.warmup_steps >= total:  # (a --minutes budget can size a run shorter than its warm-up)
        warnings.warn(f"the warm-up ({tc.warmup_steps} steps) covers the whole run of {total} steps: the learning "
                      "rate rises to its peak and never decays; lower --warmup", stacklevel=_checks.user_stacklevel())
    lrs = np.asarray(schedule(tc, total)(np.arange(1, total + 1)), dtype=np.float32)   # lrs[s]: step s
    step, stopped_by, tokens_per_step = start_step, "steps", tc.batch_size * cfg.context_length
    pending: list[tuple[int, jax.Array, np.ndarray]] = []       # (first step, losses, learning rates) per call
    timed_steps, timed_s, mark = 0, 0.0, None       # mark: (step, time) of the last sync; None before the first
    compiled: set[int] = set()                      # call lengths compiled so far
    key = root_key(tc.seed)
    # a first Ctrl-C stops at the next call and checkpoints the steps done (they were lost back to the last
    # checkpoint: 96 steps of 300 left an empty checkpoints/; a user trial, 2026-12-07); a second stops at once
    with (bar(total, f"training {folder.name}", unit="step", disable=None if progress is None else not progress) as b,
          saved_before_stopping("a checkpoint of the steps trained") as interrupted):
        b.update(step)
        while step < total:
            if interrupted:
                break
            if budget is not None and step > start_step and elapsed() >= budget:  # (at least one call per session)
                stopped_by = "minutes"
                break
            if until is not None and step >= until:
                stopped_by = "until"
                break
            # one call runs up to steps_per_call steps, never past an evaluation, checkpoint, `until` or the end
            # (the numbers are those of one step per call whatever the cut: tests/test_nanogpt.py)
            stop = _call_end(step, total if until is None else min(total, until), tc)
            chunk_lrs = lrs[step:stop]
            model.params, opt_state, losses = steps_fn(model.params, opt_state, stream, key, step,
                                                       jnp.asarray(chunk_lrs), size)
            pending.append((step, losses, chunk_lrs))
            loss_value = float(losses[-1])             # waits for the call, so the clock below is honest
            now = time.perf_counter()
            if mark is not None and stop - step in compiled:  # steps since the last sync, compilation excluded
                timed_steps, timed_s = timed_steps + stop - mark[0], timed_s + now - mark[1]
            compiled.add(stop - step)              # (one compilation per call length)
            mark = (stop, now)
            b.set_postfix(loss=f"{loss_value:.3f}",
                          tok_s=f"{tokens_per_step * timed_steps / max(timed_s, 1e-9):.0f}")
            b.update(stop - step)
            step = stop
            if step % tc.eval_every == 0 or step % tc.checkpoint_every == 0:
                metrics["train"] += _loss_rows(pending)
                pending = []
                if step % tc.eval_every == 0:
                    evaluate(step)
                if step % tc.checkpoint_every == 0:
                    checkpoint(step)
                if mark is not None:                   # evaluation and checkpoint time is not training time
                    mark = (step, time.perf_counter())
        # the last evaluation and checkpoint inside the block too: a Ctrl-C during the last call, or during them,
        # comes after both (it skipped the last checkpoint before; a review, 2026-12-07)
        metrics["train"] += _loss_rows(pending)
        final = None
        if not interrupted:
            final = (metrics["eval"][-1] if metrics["eval"] and metrics["eval"][-1]["step"] == step
                     else evaluate(step))
        if step not in mngr.all_steps():
            checkpoint(step)
        if interrupted:  # (saved_before_stopping raises KeyboardInterrupt as the block ends; resumed, the run's
            mngr.close()  # last evaluation and manifest follow)
    mngr.close()
    tokens_per_second = tokens_per_step * timed_steps / timed_s if timed_s else None   # (JSON has no NaN)
    metrics["summary"] = {"step": step, "total_steps": total, "stopped_by": stopped_by,
                          "held_out_loss": final["loss"], "held_out_perplexity": final["perplexity"],
                          "train_tokens_per_second_this_session": tokens_per_second,
                          "elapsed_s": elapsed()}
    atomic_write_json(folder / METRICS_FILE, metrics)
    plot_losses(run, metrics)
    if stopped_by != "until":
        run.finish(metrics["summary"])
    model.step = step
    return TrainResult(model, step, final["loss"], final["perplexity"], tokens_per_second, folder, stopped_by,
                       metrics)


def _loss_rows(pending) -> list[list]:
    """``[step, loss, lr]`` rows of the calls in ``pending``: (first step, losses, learning rates) each."""
    rows = []
    for first, losses, lrs in pending:
        rows += [[first + j, float(v), float(lr)] for j, (v, lr) in enumerate(zip(np.asarray(losses), lrs))]
    return rows


def plot_losses(run: RunFolder, metrics: dict) -> None:
    """``loss.png``: training loss per step (and its running mean) and held-out loss per evaluation."""
    from collapse_jax.results import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4))
    if metrics["train"]:
        steps = np.asarray([r[0] for r in metrics["train"]]) + 1
        losses = np.asarray([r[1] for r in metrics["train"]], dtype=float)   # (a NaN loss read back is None)
        ax.plot(steps, losses, color="0.75", lw=0.6, label="training batch")
        k = max(1, len(losses) // 50)
        if k > 1:
            ax.plot(steps[k - 1:], np.convolve(losses, np.ones(k) / k, mode="valid"), color="C0",
                    label=f"training, mean of {k}")
    ev = metrics["eval"]
    ax.plot([r["step"] for r in ev], np.asarray([r["loss"] for r in ev], dtype=float), "o-", color="C3", ms=3,
            label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.legend()
    ax.grid(alpha=0.3)
    run.save_figure(fig, "loss.png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning a loaded model
# ----------------------------------------------------------------------------------------------------------------


@without_x64
def finetune(model: NanoGPT, texts: Sequence[str], *, steps: int, learning_rate: float = 1e-4, batch_size: int = 8,
             seed: int = 0, progress: bool | None = None) -> list[float]:
    """``steps`` AdamW steps (constant ``learning_rate``, betas 0.9/0.95, weight decay 0.1 on matrices, clipping
    1.0, a fresh optimiser state) on windows of ``texts``, updating ``model.params`` in place.

    The texts become one stream ``[EOT, text0, EOT, text1, ..., EOT]`` (the closing EOT, so that the model also
    learns where the last text ends: with one text it otherwise never saw an end); each step draws ``batch_size``
    windows of ``min(context, len - 1) + 1`` tokens with the keys of :func:`step_keys` (``seed``, step). Returns
    the training loss of each step. The stream is zero-padded to a power of two (at least 1024 tokens) and windows are
    drawn from its real length (:func:`random_windows`' ``size``), so calls on texts of different lengths share a
    compilation and give the same numbers as an unpadded stream. ``progress``: a bar over the steps (None: the
    library's default, ``COLLAPSE_JAX_PROGRESS``).
    """
    items = check_texts(texts, allow_empty=False)
    steps = _checks.positive_int("steps", steps)
    tc = TrainConfig(steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed, warmup_steps=0)
    stream = np.append(model.tokenizer.encode_documents(items), np.int32(model.tokenizer.eot_id))
    if len(stream) < 2:
        raise ValueError("texts must hold at least one token to predict")
    seq_len = min(model.context_length, len(stream) - 1)
    step_fn = train_step(model.graphdef, _hyper(tc), tc.batch_size, seq_len)
    params = _copy(model.params)              # donated below: never the caller's (possibly shared) arrays
    opt_state = committed(optimizer(tc).init(params))
    stream, size = padded_stream(stream)
    lr, losses, key = jnp.float32(tc.learning_rate), [], root_key(tc.seed)
    with bar(steps, f"fine-tuning ({model.name})", unit="step",
             disable=None if progress is None else not progress) as b:
        for s in range(steps):
            params, opt_state, loss = step_fn(params, opt_state, stream, key, s, lr, size)
            losses.append(loss)
            if not b.disable:                 # reading the loss waits for the step: only for a bar that is drawn
                b.set_postfix(loss=f"{float(loss):.3f}")
            b.update(1)
    losses = [float(v) for v in losses]
    bad = next((s for s, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:  # (the update happens here, at the end: a diverged run leaves the model as it was)
        check_finite_loss(losses[bad], bad, learning_rate, losses[:bad])
    if not all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(params)):  # the last step's update, whose
        # loss no step after it reads (a review, 2026-12-07)
        raise weights_diverged(steps, learning_rate, losses)
    model.params = params
    model.step += steps
    return losses
