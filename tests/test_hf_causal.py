"""llm_bridge.hf_causal: Hugging Face causal LMs from a local folder, on a tiny random GPT-2 built here.

The fixture trains a 400-token byte-level BPE (``tokenizers``) on 300 standard-library sentences, wraps it in
``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as BOS and EOS, builds a random 2-layer, 2-head, 32-d GPT-2 with a
64-token context and saves both with ``save_pretrained``; the tests load that folder like a user's checkpoint.
Skipped without the ``llm`` extra (torch, transformers, tokenizers).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings

import numpy as np
import pytest

from llm_bridge.generators import Generator, Sampling, cut_at_stop

HAVE_LLM = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "tokenizers"))
pytestmark = pytest.mark.skipif(not HAVE_LLM, reason="needs the llm extra (torch, transformers, tokenizers): "
                                                     "python3 -m pip install torch==2.13.0 && "
                                                     "python3 -m pip install -e '.[llm]'")

CONTEXT = 64
PROMPTS = ["The cat", "", "In Python the value of an expression", "A class", "Return the", "x"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on the shared 2-core machine, two threads made each tiny op wait ~10 ms for the other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_texts():
    from llm_bridge import corpus as cp

    return list(cp.stdlib_corpus(cp.CorpusConfig(docstrings=False)).texts[:300])


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, corpus_texts):
    """A saved tiny GPT-2 + byte-level BPE tokenizer folder (see the module docstring)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus_texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                                     eos_token="<|endoftext|>")
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=eos, eos_token_id=eos)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def lm(tiny_folder):
    """The tiny model loaded once for the tests that do not change it."""
    from llm_bridge.hf_causal import hf_causal_lm

    return hf_causal_lm(tiny_folder)


def fresh(tiny_folder):
    from llm_bridge.hf_causal import hf_causal_lm

    return hf_causal_lm(tiny_folder)


def hand_nll(model, ids: list[int], context_start=lambda i: 0) -> float:
    """-sum over i >= 1 of log p(ids[i] | ids[context_start(i):i]), one forward pass and log-softmax per token."""
    import torch

    total = 0.0
    with torch.no_grad():
        for i in range(1, len(ids)):
            logits = model(torch.tensor([ids[context_start(i):i + 1]])).logits[0, -2]
            total -= float(torch.log_softmax(logits.double(), dim=-1)[ids[i]])
    return total


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------


def test_loads_a_saved_folder_as_a_generator(lm, tiny_folder):
    assert isinstance(lm, Generator)
    assert lm.context_length == CONTEXT and lm.name == f"hf:{tiny_folder.name}"
    eos = lm.tokenizer.eos_token_id
    assert lm.prefix == [eos] and lm.eos_ids == [eos] and lm.pad_id == eos
    assert not lm.model.training
    assert lm.encode("The cat") == [eos] + lm.tokenizer.encode("The cat")


def test_both_generators_take_every_keyword_of_the_protocol():
    """Code written against the Generator protocol runs on either model (HF's perplexity took no ``progress``)."""
    import inspect

    from llm_bridge.hf_causal import HFCausalLM
    from llm_bridge.nanogpt import NanoGPT

    for method in ("generate", "perplexity", "finetune"):
        wanted = set(inspect.signature(getattr(Generator, method)).parameters)
        assert "progress" in wanted
        for cls in (NanoGPT, HFCausalLM):
            assert wanted <= set(inspect.signature(getattr(cls, method)).parameters), (cls.__name__, method)


def test_transformers_loading_bar_follows_the_librarys_progress_setting(tiny_folder, capfd, monkeypatch):
    """A user trial (2026-12-04): transformers' "Loading weights" bar printed with COLLAPSE_JAX_PROGRESS=0."""
    from transformers.utils import logging

    from llm_bridge.hf_causal import hf_causal_lm

    monkeypatch.setenv("COLLAPSE_JAX_PROGRESS", "0")
    logging.enable_progress_bar()
    capfd.readouterr()
    hf_causal_lm(tiny_folder)
    assert "Loading weights" not in capfd.readouterr().err
    assert logging.is_progress_bar_enabled()                        # the global setting is restored
    monkeypatch.setenv("COLLAPSE_JAX_PROGRESS", "1")
    from collapse_jax import progress

    monkeypatch.setattr(progress, "to_log", lambda: False)   # (on a terminal: in a log it is off, with our bars)
    hf_causal_lm(tiny_folder)
    assert "Loading weights" in capfd.readouterr().err


def test_transformers_writing_bar_follows_the_librarys_progress_setting(tiny_folder, tmp_path, capfd, monkeypatch):
    """A docs trial (2026-12-05): save() printed transformers' "Writing model shards" bar with
    COLLAPSE_JAX_PROGRESS=0."""
    from transformers.utils import logging

    from llm_bridge.hf_causal import hf_causal_lm

    lm = hf_causal_lm(tiny_folder)
    logging.enable_progress_bar()
    monkeypatch.setenv("COLLAPSE_JAX_PROGRESS", "0")
    capfd.readouterr()
    lm.save(tmp_path / "quiet")
    assert "Writing" not in capfd.readouterr().err
    assert logging.is_progress_bar_enabled()
    monkeypatch.setenv("COLLAPSE_JAX_PROGRESS", "1")
    from collapse_jax import progress

    monkeypatch.setattr(progress, "to_log", lambda: False)   # (on a terminal: in a log it is off, with our bars)
    lm.save(tmp_path / "shown")
    assert "Writing" in capfd.readouterr().err


def test_encoder_is_the_mean_last_hidden_state(lm):
    """HFCausalLM.encoder against an unpadded forward pass of the GPT-2 body, one text at a time: the mean over
    [start token] + text tokens, cut to the context, of its last hidden state (after ln_f)."""
    import torch

    from llm_bridge.hf_causal import HFCausalLM

    texts = ["the cat sat on the mat.", "", "word " * (2 * CONTEXT), "def f(x):\n    return x"]
    enc = lm.encoder()
    assert (enc.dim, enc.max_length) == (32, CONTEXT)
    with pytest.warns(UserWarning, match=f"1 of 4 texts are longer than .* max_length of {CONTEXT} tokens"):
        got = enc.encode(texts, batch_size=3, progress=False)
    with torch.inference_mode():
        want = np.stack([lm.model.transformer(torch.tensor([lm.encode(t)[:CONTEXT]])).last_hidden_state[0].mean(0)
                         .numpy() for t in texts])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    unit = lm.encoder(normalize=True).encode(texts[:2], progress=False)
    np.testing.assert_allclose(unit, got[:2] / np.linalg.norm(got[:2], axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    bare = HFCausalLM(lm.model, lm.tokenizer)
    bare.prefix = []                                           # a tokenizer without a start token
    with pytest.raises(ValueError, match="texts\\[1\\] is empty .1 of 2 texts are.*no token to embed"):
        bare.encoder().encode(["a", ""], progress=False)


def test_mean_pool_encoder_loads_a_causal_lm_folder(tiny_folder, lm):
    """An audit (2026-12-05): hf_mean_pool_encoder on a GPT-2 folder failed at encode time (its tokenizer has no
    padding token). Against an unpadded forward pass, text by text (no start token: the tokenizer adds none)."""
    import torch

    from llm_bridge.encoders import hf_mean_pool_encoder

    texts = ["the cat sat on the mat.", "a", "def f(x):\n    return x"]
    got = hf_mean_pool_encoder(tiny_folder).encode(texts, progress=False)
    with torch.inference_mode():
        want = np.stack([lm.model.transformer(torch.tensor([lm.tokenizer.encode(t)])).last_hidden_state[0].mean(0)
                         .numpy() for t in texts])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # (was a row of zeros; then refused in the batch that held it: after every longer text was embedded, and
    # measure_responses and diversity, which embed all their texts at once, too; a user trial, 2026-12-07)
    import dataclasses

    from llm_bridge.diversity import diversity
    from llm_bridge.embedding_metrics import measure_responses

    enc, batches = hf_mean_pool_encoder(tiny_folder), []
    counted = dataclasses.replace(enc, embed_batch=lambda b: batches.append(b) or enc.embed_batch(b))
    assert not enc.embeds_empty
    with pytest.raises(ValueError, match="texts\\[3\\] is empty .2 of 5 texts are.*no token to embed"):
        counted.encode(["a", "b", "c", "", ""], batch_size=1, progress=False)
    with pytest.raises(ValueError, match="responses\\[1\\]\\[2\\] is empty"):
        measure_responses([["a", "b", "c"], ["d", "e", ""]], counted, batch_size=1)
    with pytest.raises(ValueError, match="texts\\[1\\] is empty"):
        diversity(["a b", "", "c d"], encoder=counted)
    assert batches == []                                              # before any batch ran


def test_dtype_option(tiny_folder):
    import torch

    from llm_bridge.hf_causal import hf_causal_lm

    half = hf_causal_lm(tiny_folder, dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert np.isfinite(half.perplexity(["The cat sat on the mat."]).corpus)


@pytest.mark.parametrize("bad, kind", [(None, "NoneType"), (3, "int")])
def test_a_path_that_is_not_a_str_or_path_is_named(lm, bad, kind):
    # an audit (2026-12-07): Path(None) raised a bare TypeError ("expected str, bytes or os.PathLike object")
    from llm_bridge.hf_causal import hf_causal_lm

    for call in (lambda: hf_causal_lm(bad), lambda: lm.save(bad)):
        with pytest.raises(ValueError, match=rf"path must be a local model folder \(a str or path\), got {kind}"):
            call()


def test_bad_folders(tmp_path, tiny_folder):
    from llm_bridge.hf_causal import hf_causal_lm

    with pytest.raises(ValueError, match="not a directory"):
        hf_causal_lm(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="'openai-community/gpt2'.*not a directory"):
        hf_causal_lm("openai-community/gpt2")
    with pytest.raises(ValueError, match="missing config.json"):
        hf_causal_lm(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=f"path '{tmp_path / 'notes.txt'}' is a file, not a model folder"):
        hf_causal_lm(tmp_path / "notes.txt")
    shutil.copy(tiny_folder / "config.json", tmp_path)
    with pytest.raises(ValueError, match=f"{tmp_path}.*no weights.*and no tokenizer files"):
        hf_causal_lm(tmp_path)
    shutil.copy(tiny_folder / "model.safetensors", tmp_path)
    with pytest.raises(ValueError, match="no tokenizer files"):
        hf_causal_lm(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        hf_causal_lm(tiny_folder, dtype="float33")
    # weights that do not load, or that lack tensors (transformers would fill those at random and only log it)
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(tiny_folder, bad)
    weights = bad / "model.safetensors"
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=f"model in '{bad}' could not be loaded .*truncated or damaged"):
        hf_causal_lm(bad)
    weights.write_bytes(full)
    config = (bad / "config.json").read_text()     # (a damaged config.json was blamed on the tokenizer; a user
    (bad / "config.json").write_text("{not json")  # trial, 2026-12-07)
    with pytest.raises(ValueError, match=f"path '{bad}': its config.json is not valid JSON .*truncated or damaged"):
        hf_causal_lm(bad)
    (bad / "config.json").write_text(config)
    save_file({k: v for k, v in load_file(str(weights)).items() if ".h.1." not in k}, str(weights),
              metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"weights in '{bad}' lack .* tensors .*transformer.h.1"):
        hf_causal_lm(bad)
    # an empty string was the current folder; a hub id was told to use SentenceTransformer.save
    with pytest.raises(ValueError, match="path must be a local model folder, got an empty string"):
        hf_causal_lm("")
    with pytest.raises(ValueError, match=r"not a directory; write one with model.save_pretrained\(path\)"):
        hf_causal_lm("openai-community/gpt2")
    # a tokenizer of more tokens than the model embeds: an IndexError from F.embedding at the first such token,
    # naming nothing (a user trial, 2026-12-06)
    import transformers

    small = tmp_path / "small-vocab"
    shutil.copytree(tiny_folder, small)
    config = transformers.GPT2Config.from_pretrained(str(small))
    config.vocab_size = 100
    transformers.GPT2LMHeadModel(config).save_pretrained(str(small))
    with pytest.raises(ValueError, match=r"small-vocab': its tokenizer has \d+ tokens but the model embeds only 100"):
        hf_causal_lm(small)
    # a config's end-of-text id outside the vocabulary (GPT2Config's default 50256 kept beside a small tokenizer):
    # perplexity, finetune and the encoder failed with torch's IndexError (a user trial, 2026-12-06)
    far = tmp_path / "far-eos"
    shutil.copytree(tiny_folder, far)
    config = json.loads((far / "config.json").read_text())
    (far / "config.json").write_text(json.dumps({**config, "eos_token_id": 50256}))
    with pytest.raises(ValueError, match=r"far-eos.*end-of-text \(eos_token_id\) token id 50256 is outside the "
                                         r"model's \d+-token vocabulary"):
        hf_causal_lm(far)
    # the hint names the cause: "is a file truncated or damaged?" was said of an unknown architecture too
    unknown = tmp_path / "unknown"
    shutil.copytree(tiny_folder, unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "frobnicator"}))
    with pytest.raises(ValueError, match=r"unknown' could not be loaded .*; config.json names an architecture this "
                                         r"transformers version does not know"):
        hf_causal_lm(unknown)


def test_models_that_are_not_causal_are_refused(tmp_path, tiny_folder):
    """A user trial (2026-12-06): a BERT masked-LM folder loaded as a "causal" BertLMHeadModel with bidirectional
    attention (its perplexity saw the tokens it scored); a T5 folder was asked whether a file was damaged."""
    import torch
    import transformers

    from llm_bridge.hf_causal import hf_causal_lm

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_folder))
    torch.manual_seed(0)
    bert = tmp_path / "bert"
    transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64)).save_pretrained(str(bert))
    tokenizer.save_pretrained(str(bert))
    with pytest.raises(ValueError, match=r"bert' is not a causal LM: its prediction at the first position changes "
                                         r"with a later token .*BertForMaskedLM"):
        hf_causal_lm(bert)
    t5 = tmp_path / "t5"
    transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)).save_pretrained(str(t5))
    tokenizer.save_pretrained(str(t5))
    with pytest.raises(ValueError, match=r"t5' could not be loaded .*; config.json's model type is not of the kind "
                                         r"this loader takes"):
        hf_causal_lm(t5)


@pytest.mark.parametrize("device, match", [
    ("banana", "device must be a torch device such as 'cpu' or 'cuda:0', got 'banana'"),
    (3, "device must be a torch device"),
])
def test_bad_devices_are_refused_before_loading(tiny_folder, device, match, monkeypatch):
    """Torch's own errors came after the weights had loaded (an AssertionError for CUDA on a CPU-only torch)."""
    import transformers

    from llm_bridge.hf_causal import hf_causal_lm

    def no_load(*args, **kwargs):
        raise AssertionError("loaded before the device was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ValueError, match=match):
        hf_causal_lm(tiny_folder, device=device)


def test_cuda_device_without_cuda_is_refused(tiny_folder, monkeypatch):
    import torch

    from llm_bridge.hf_causal import hf_causal_lm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda': this torch .* has no CUDA device; use 'cpu'"):
        hf_causal_lm(tiny_folder, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device 'cuda:1': this machine has 1 CUDA device\(s\)"):
        hf_causal_lm(tiny_folder, device="cuda:1")


# --------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------


def test_generate_is_deterministic_per_seed_and_leaves_global_rng_alone(lm):
    import torch

    sampling = Sampling(max_new_tokens=12)
    state = torch.get_rng_state()
    first = lm.generate(PROMPTS, sampling, seed=3, batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(first) == len(PROMPTS) and all(isinstance(t, str) and t for t in first)
    torch.manual_seed(12345)                                   # another global state and a call in between
    lm.generate(PROMPTS[:2], sampling, seed=9, batch_size=1)
    assert lm.generate(PROMPTS, sampling, seed=3, batch_size=4) == first
    other = lm.generate(PROMPTS, sampling, seed=4, batch_size=4)
    assert sum(a != b for a, b in zip(first, other)) >= len(PROMPTS) - 1


def test_left_padded_batches_match_prompts_run_alone(lm):
    """top_k = 1 leaves one token to sample, so padding a prompt on the left must not change its continuation."""
    greedy = Sampling(max_new_tokens=10, top_k=1)
    batched = lm.generate(PROMPTS, greedy, seed=0, batch_size=len(PROMPTS))
    alone = [lm.generate([p], greedy, seed=0)[0] for p in PROMPTS]
    assert batched == alone
    assert len(set(batched)) > 1


def test_top_k_and_top_p_narrow_the_samples(lm):
    """Eight rows of one prompt: all-token sampling gives distinct rows, a tiny nucleus gives the greedy row."""
    wide = lm.generate(["The cat"] * 8, Sampling(max_new_tokens=8), seed=1)
    narrow = lm.generate(["The cat"] * 8, Sampling(max_new_tokens=8, top_p=1e-6), seed=1)
    greedy = lm.generate(["The cat"], Sampling(max_new_tokens=8, top_k=1))
    assert len(set(wide)) == 8 and set(narrow) == set(greedy)
    # sizes from NumPy arrays (a sweep grid): transformers refused np.int64 top_k after loading, misleadingly
    assert lm.generate(["The cat"], Sampling(max_new_tokens=np.int64(8), top_k=np.int64(1))) == greedy
    vocab = lm.model.config.vocab_size  # (a top_k beyond it was taken; a user trial, 2026-12-07)
    assert len(lm.generate(["The cat"], Sampling(max_new_tokens=8, top_k=vocab), seed=1)) == 1   # (every token)
    with pytest.raises(ValueError, match=f"top_k must be at most the vocabulary size {vocab:,} of this model"):
        lm.generate(["The cat"], Sampling(max_new_tokens=8, top_k=vocab + 1))


@pytest.mark.parametrize("temperature", [1e-40, 1e-46, 1e-300, 5e-324])
def test_a_vanishing_temperature_samples_the_argmax_like_the_nanogpt(lm, temperature):
    """logits / temperature overflowed float32 (any logit at 1e-46, which is 0 in float32): torch raised
    "probability tensor contains either inf, nan or element < 0". Now the argmax, as llm_bridge.nanogpt does."""
    greedy = lm.generate(PROMPTS, Sampling(max_new_tokens=8, top_k=1))
    assert lm.generate(PROMPTS, Sampling(max_new_tokens=8, temperature=temperature), seed=2) == greedy


def test_a_model_with_more_rows_than_its_tokenizer_draws_only_the_tokenizers_ids(lm, monkeypatch):
    """A model whose embedding is padded beyond its tokenizer (Pythia, Phi-2, Qwen2 pad to a multiple of 64 or 128)
    drew the padded ids, which decode to nothing: tokens vanished from the text while the model went on from them
    (an audit, 2026-12-07: 97 of 160 draws here). As the nanoGPT does, only the tokenizer's ids are drawn now."""
    import torch
    import transformers

    from llm_bridge.hf_causal import HFCausalLM

    size = len(lm.tokenizer)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=size + 600, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=lm.tokenizer.eos_token_id, eos_token_id=lm.tokenizer.eos_token_id)
    padded = HFCausalLM(transformers.GPT2LMHeadModel(config), lm.tokenizer)
    drawn = []
    generate = padded.model.generate

    def spy(*args, **kwargs):
        out = generate(*args, **kwargs)
        drawn.append(out[:, kwargs["input_ids"].shape[1]:])
        return out

    monkeypatch.setattr(padded.model, "generate", spy)
    for sampling in (Sampling(max_new_tokens=20), Sampling(max_new_tokens=20, temperature=3.0, top_p=0.99)):
        padded.generate(["The cat"] * 8, sampling, seed=0)
    assert all(int(d.max()) < size for d in drawn)
    with pytest.raises(ValueError, match=f"top_k must be at most the vocabulary size {size:,} of this model's tok"):
        padded.generate(["The cat"], Sampling(max_new_tokens=4, top_k=size + 1))


def test_shifted_temperature_is_transformers_softmax_without_the_overflow():
    import torch

    from llm_bridge.hf_causal import shifted_temperature_class

    warp = shifted_temperature_class()
    scores = torch.tensor([[30.0, 29.0, -5.0, 12.5], [1.0, 3.0, 3.0, -2.0]])
    for t in (0.3, 0.7, 2.5):
        torch.testing.assert_close(torch.softmax(warp(t)(None, scores), -1), torch.softmax(scores / t, -1))
    assert torch.isnan(torch.softmax(scores / 1e-38, -1)).any()          # transformers' own division
    for t in (1e-38, 1e-46, 1e-300):                                      # the argmax; a tie stays a tie
        probs = torch.softmax(warp(t)(None, scores), -1)
        torch.testing.assert_close(probs, torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0]]))


def test_temperature_goes_before_top_k_and_top_p_as_in_transformers(lm):
    """generate passes temperature 1.0 to transformers and the temperature as its own logits processor: the same
    draws as transformers' own warper, which it applies before top-k and top-p (the nucleus depends on the order)."""
    import torch
    import transformers

    from llm_bridge.hf_causal import shifted_temperature_class

    ids, mask = lm.pad([lm.encode(p) for p in ["The cat"] * 6 + ["x", "A class"]], left=True)
    common = dict(do_sample=True, top_k=20, top_p=0.8, max_new_tokens=10, pad_token_id=lm.pad_id,
                  eos_token_id=lm.eos_ids or None)
    out = []
    with torch.inference_mode(), lm.own_generation_config_set_aside():
        for temperature, processors in ((0.7, []), (1.0, [shifted_temperature_class()(0.7)])):
            torch.manual_seed(5)
            out.append(lm.model.generate(
                input_ids=ids, attention_mask=mask, logits_processor=transformers.LogitsProcessorList(processors),
                generation_config=transformers.GenerationConfig(temperature=temperature, **common)))
    assert torch.equal(out[0], out[1]) and len({tuple(r) for r in out[0].tolist()}) > 2


def test_stop_cuts_the_text_and_ends_rows_early(lm):
    """Sampling draws for every row at every step, so the same seed gives the same tokens with and without a stop
    string, and the stopped texts are the unstopped ones cut at the stop."""
    plain = lm.generate(PROMPTS, Sampling(max_new_tokens=20), seed=5, batch_size=3)
    stopped = lm.generate(PROMPTS, Sampling(max_new_tokens=20, stop="e"), seed=5, batch_size=3)
    assert stopped == [cut_at_stop(t, "e") for t in plain]
    assert sum("e" in t for t in plain) >= 2 and not any("e" in t for t in stopped)


def test_a_stop_that_begins_in_the_prompt_does_not_end_the_row(lm):
    """The stop is looked for in the new text only: with the prompt's last character + the continuation's first
    as the stop, the row runs on (transformers' own ``stop_strings`` ended it after one token)."""
    ran_on = 0
    for prompt in PROMPTS:
        if not prompt:
            continue
        plain = lm.generate([prompt], Sampling(max_new_tokens=12, top_k=1))[0]
        first_token = lm.generate([prompt], Sampling(max_new_tokens=1, top_k=1))[0]
        stop = prompt[-1] + plain[0]
        assert lm.generate([prompt], Sampling(max_new_tokens=12, top_k=1, stop=stop)) == [cut_at_stop(plain, stop)]
        ran_on += len(cut_at_stop(plain, stop)) > len(first_token)
    assert ran_on >= 1  # a row that transformers' stop_strings ended after its first token


def test_the_checkpoints_own_generation_settings_are_not_applied(lm, tiny_folder, tmp_path):
    """transformers fills what a passed GenerationConfig leaves unset from the model's generation_config.json; those
    settings must not change what generate samples, and the model's own config is back afterwards."""
    import json
    import shutil

    from llm_bridge.hf_causal import hf_causal_lm

    base = lm.generate(PROMPTS, Sampling(max_new_tokens=16, top_k=1))
    folder = tmp_path / "with-settings"
    shutil.copytree(tiny_folder, folder)
    settings = json.loads((folder / "generation_config.json").read_text())
    settings.update(repetition_penalty=50.0, no_repeat_ngram_size=1, min_new_tokens=16,
                    suppress_tokens=list(range(1, 200)))
    (folder / "generation_config.json").write_text(json.dumps(settings))
    other = hf_causal_lm(folder)
    assert other.model.generation_config.repetition_penalty == 50.0
    assert other.generate(PROMPTS, Sampling(max_new_tokens=16, top_k=1)) == base
    assert other.model.generation_config.repetition_penalty == 50.0


def test_long_prompts_are_cut_on_the_left_with_one_warning(lm, corpus_texts):
    long = " ".join(corpus_texts[:3])
    assert len(lm.encode(long)) > CONTEXT
    with pytest.warns(UserWarning, match=r"^1 of 2 prompts are longer than the 56 tokens") as record:
        out = lm.generate(["The cat", long], Sampling(max_new_tokens=8), seed=0)
    assert record[0].filename == __file__                              # the caller's line, not the library's
    assert len(out) == 2
    # a prompt asked for several responses counts once (a user trial, 2026-12-05: "4 of 64 prompts" were 4 of 16)
    with pytest.warns(UserWarning, match=r"^1 of 2 distinct prompts are longer than the 56 tokens"):
        lm.generate(["The cat", long] * 3, Sampling(max_new_tokens=8), seed=0)
    import torch

    tail = lm.encode(long)[-(CONTEXT - 8 - 1):]             # the start token is kept in front of the last 55
    with pytest.warns(UserWarning):
        cut = lm.generate([long], Sampling(max_new_tokens=8, top_k=1))
    with torch.no_grad():
        by_hand = lm.model.generate(torch.tensor([lm.prefix + tail]), do_sample=False, max_new_tokens=8,
                                    pad_token_id=lm.pad_id)
    assert cut == [lm.decode(by_hand[0, CONTEXT - 8:].tolist(), None)]


def test_prompts_left_with_the_start_token_only_are_named(lm):
    # max_new_tokens = context - 1 leaves room for the start token alone: every non-empty prompt lost all its text,
    # which "their start was cut off" understated (an audit, 2026-12-04)
    with pytest.warns(UserWarning) as record:
        out = lm.generate(["The cat", "", "a dog ran"], Sampling(max_new_tokens=CONTEXT - 1, top_k=1), seed=0)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("2 of 3 prompts kept none of their text") for m in messages), messages
    assert any(w.filename == __file__ for w in record)
    assert out[0] == out[1] == out[2]                     # greedy from the start token alone, whatever the prompt


@pytest.mark.parametrize("call, match", [
    (lambda m: m.generate([]), "prompts must hold at least one text"),
    (lambda m: m.generate(["ok", 3]), r"prompts\[1\] must be a str"),
    (lambda m: m.generate("a bare string"), "single string"),
    (lambda m: m.generate(["x"], Sampling(temperature=0.0)), "temperature"),
    (lambda m: m.generate(["x"], Sampling(temperature=-1.0)), "temperature"),
    (lambda m: m.generate(["x"], Sampling(top_p=0.0)), "top_p"),
    (lambda m: m.generate(["x"], Sampling(top_p=1.5)), "top_p"),
    (lambda m: m.generate(["x"], Sampling(top_k=0)), "top_k"),
    (lambda m: m.generate(["x"], Sampling(max_new_tokens=CONTEXT)),
     f"max_new_tokens must be at most context_length - 1 = {CONTEXT - 1}"),
    (lambda m: m.generate(["x"], batch_size=0), "batch_size"),
    (lambda m: m.generate(["x"], seed=-1), "seed"),
    (lambda m: m.generate(["x"], {"temperature": 1.0}), "sampling must be"),
    (lambda m: m.perplexity([]), "texts must hold at least one text"),
    (lambda m: m.perplexity(["x", None]), r"texts\[1\]"),
    (lambda m: m.perplexity(["x", "ab\ud800"]), r"texts\[1\] cannot be encoded as UTF-8"),
    (lambda m: m.generate(["\ud800"]), r"prompts\[0\] cannot be encoded as UTF-8"),
    (lambda m: m.finetune(["x", "y\udc80"], steps=1), r"texts\[1\] cannot be encoded as UTF-8"),
    (lambda m: m.perplexity(["x"], stride=CONTEXT), "stride must be at most context_length - 1"),
    (lambda m: m.finetune([], steps=1), "texts must hold"),
    (lambda m: m.finetune(["x"], steps=0), "steps"),
    (lambda m: m.finetune(["x"], steps=1, learning_rate=0.0), "learning_rate"),
])
def test_bad_input_is_refused_before_any_compute(lm, call, match):
    with pytest.raises(ValueError, match=match):
        call(lm)


# --------------------------------------------------------------------------------------------------------------
# Perplexity
# --------------------------------------------------------------------------------------------------------------


def test_perplexity_matches_a_hand_loop_over_the_logits(lm, corpus_texts):
    texts = [t for t in corpus_texts if len(lm.encode(t)) <= CONTEXT][:5] + ["", "x"]
    res = lm.perplexity(texts, batch_size=3)
    for j, text in enumerate(texts):
        ids = lm.encode(text)
        assert len(ids) <= CONTEXT and res.tokens[j] == len(ids) - 1
        assert res.nll[j] == pytest.approx(hand_nll(lm.model, ids), rel=1e-5, abs=1e-5)
    assert res.nll[5] == 0.0 and res.tokens[5] == 0                  # "" is the start token alone
    # so it has no perplexity (NaN; it scored 1.0), and the corpus value is that of the other texts' tokens
    assert np.isnan(res.per_text[5]) and np.isfinite(np.delete(res.per_text, 5)).all()
    assert res.corpus == pytest.approx(np.exp(res.nll.sum() / res.tokens.sum()))
    assert np.isnan(lm.perplexity([""]).corpus)
    np.testing.assert_allclose(lm.perplexity(texts, batch_size=1).nll, res.nll, rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 16, None, CONTEXT - 1])
def test_perplexity_windows_of_long_texts(lm, corpus_texts, stride):
    """Token i is predicted once, from tokens [k S, i) with k = max(0, floor((i - C) / S) + 1)."""
    text = next(t for k in range(1, 20) if len(lm.encode(t := " ".join(corpus_texts[:k]))) > 2 * CONTEXT)
    ids = lm.encode(text)
    S = stride or CONTEXT // 2
    res = lm.perplexity(["The cat", text], batch_size=4, stride=stride)
    assert res.tokens[1] == len(ids) - 1
    want = hand_nll(lm.model, ids, context_start=lambda i: S * max(0, (i - CONTEXT) // S + 1))
    assert res.nll[1] == pytest.approx(want, rel=1e-5)
    assert res.nll[0] == pytest.approx(lm.perplexity(["The cat"]).nll[0], rel=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning and saving
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*texts are longer than the context:UserWarning")
def test_finetune_lowers_the_loss_deterministically(tiny_folder, corpus_texts):
    texts = corpus_texts[:12]
    a, b, c = fresh(tiny_folder), fresh(tiny_folder), fresh(tiny_folder)
    before = a.perplexity(texts).corpus
    losses = a.finetune(texts, steps=30, learning_rate=3e-3, batch_size=4, seed=7)
    assert len(losses) == 30 and not a.model.training
    assert a.perplexity(texts).corpus < 0.5 * before
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert b.finetune(texts, steps=30, learning_rate=3e-3, batch_size=4, seed=7) == losses
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert np.array_equal(pa.numpy(), pb.numpy()), name
    assert c.finetune(texts, steps=30, learning_rate=3e-3, batch_size=4, seed=8) != losses


def test_a_diverging_finetune_stops_at_its_first_non_finite_loss(tiny_folder, monkeypatch):
    """A user trial (2026-12-06): learning_rate = 1e4 gave losses 5.99, 1.2e9, nan, nan, nan and NaN weights without a
    word; the next generate failed inside torch.multinomial. The run stops at a non-finite loss and restores the
    weights from before the call (another trial, 2026-12-07: the update it kept was the one that broke the model)."""
    import torch

    lm = fresh(tiny_folder)
    weights = {name: value.clone() for name, value in lm.model.state_dict().items()}
    text = lm.generate(["hello"], Sampling(max_new_tokens=4), seed=3, progress=False)
    with pytest.raises(ValueError, match=r"fine-tuning diverged: the loss at step (?:[2-9]|\d\d) is nan .*the "
                                         r"model is unchanged: lower learning_rate \(got 10000\)"):
        lm.finetune(["hello world this is text"] * 4, steps=20, learning_rate=1e4, progress=False)
    assert not lm.model.training
    for name, value in lm.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert lm.generate(["hello"], Sampling(max_new_tokens=4), seed=3, progress=False) == text
    # one step: its loss is finite, the update it makes is not (a review, 2026-12-07: only losses were checked)
    step = torch.optim.AdamW.step

    def step_to_nan(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step_to_nan)
    with pytest.raises(ValueError, match=r"fine-tuning diverged: the weights after step 1 are not finite \(losses: "
                                         r"[\d.]+\); the model is unchanged"):
        lm.finetune(["hello world this is text"] * 4, steps=1, learning_rate=1e-4, progress=False)
    for name, value in lm.model.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_the_constructor_names_a_wrong_model_or_tokenizer(tiny_folder):
    """A user trial (2026-12-07): HFCausalLM("x", "y") and a None tokenizer were AttributeErrors from inside."""
    from llm_bridge.hf_causal import HFCausalLM

    lm = fresh(tiny_folder)
    with pytest.raises(ValueError, match=r"model must be a loaded transformers causal LM .*got str"):
        HFCausalLM("x", "y")
    with pytest.raises(ValueError, match=r"tokenizer must be a loaded transformers tokenizer .*got NoneType"):
        HFCausalLM(lm.model, None)
    assert HFCausalLM(lm.model, lm.tokenizer).context_length == lm.context_length


def test_a_model_with_broken_weights_is_refused_by_generate(tiny_folder):
    """A user trial (2026-12-07): a model with NaN weights sampled text at temperature 1e-46 without a word and failed
    inside torch.multinomial at others."""
    import torch

    lm = fresh(tiny_folder)
    with torch.no_grad():
        next(lm.model.parameters()).fill_(float("nan"))
    for temperature in (1.0, 1e-46, 0.7):
        with pytest.raises(ValueError, match=r"logits are not finite \(NaN or \+inf\) at a sampled token"):
            lm.generate(["hello"], Sampling(max_new_tokens=3, temperature=temperature), progress=False)


def test_finetune_warns_of_texts_cut_to_the_context_and_takes_progress(tiny_folder):
    lm = fresh(tiny_folder)
    with pytest.warns(UserWarning, match=f"1 of 2 texts are longer than the context \\({CONTEXT} tokens"):
        lm.finetune(["word " * 200, "short"], steps=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm.finetune(["short", "also short"], steps=1, progress=False)
    assert np.isfinite(lm.perplexity(["short"], progress=False).corpus)


def test_finetuned_model_learns_to_end_texts_and_saves(tiny_folder, tmp_path):
    """After training on one sentence + EOS, greedy generation from an empty prompt writes the sentence and stops
    (the EOS token ends the row); saving and loading keeps the weights exactly."""
    from llm_bridge.hf_causal import hf_causal_lm

    lm = fresh(tiny_folder)
    lm.finetune(["The cat sat."], steps=40, learning_rate=1e-2, batch_size=4, seed=0)
    greedy = Sampling(max_new_tokens=20, top_k=1)
    assert lm.generate(["", "The cat sat."], greedy) == ["The cat sat.", ""]
    target = tmp_path / "gen1"
    lm.save(target)
    lm.save(target)                                              # an existing folder is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen1"]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        lm.save(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="holds files but no saved model"):
        lm.save(tmp_path / "data")                              # a user's folder is never replaced
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "data" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "gen1", "notes.txt"]
    # a folder with a config.json and other things was replaced whole, deleting them (an audit, 2026-12-04)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"project": "mine"}')
    (project / "README.md").write_text("mine")
    with pytest.raises(ValueError, match="holds files but no saved model"):
        lm.save(project)                                        # a config.json that is not a transformers config
    mixed = tmp_path / "mixed"
    lm.save(mixed)
    (mixed / "NOTES.md").write_text("mine")
    (mixed / "runs").mkdir()
    with pytest.raises(ValueError, match=r"holds a saved model and 2 other entries \(NOTES.md, runs/\)"):
        lm.save(mixed)
    assert (project / "README.md").read_text() == "mine" and (mixed / "NOTES.md").read_text() == "mine"
    # the saved folder has a new folder's permissions (mkdtemp's 0o700 before)
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~umask
    back = hf_causal_lm(target)
    texts = ["The cat sat.", "A dog ran."]
    np.testing.assert_array_equal(back.perplexity(texts).nll, lm.perplexity(texts).nll)
    assert back.generate(["", "The"], greedy) == lm.generate(["", "The"], greedy)


@pytest.fixture(scope="module")
def metaspace_tokenizer(corpus_texts):
    """A SentencePiece-style tokenizer (Llama 2, Mistral, Gemma): Metaspace pre-tokenizer and decoder, which drop
    the leading space of a decode's first word."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    bpe.decoder = decoders.Metaspace(prepend_scheme="first")
    bpe.train_from_iterator(corpus_texts + ["The cat sat on the mat."], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


def test_a_continuation_keeps_its_leading_space_with_a_sentencepiece_tokenizer(metaspace_tokenizer):
    """A user trial (2026-12-06): with a Llama-2-style tokenizer `generate` returned "sat on the mat." after the
    prompt "The cat" (prompt + text: "The catsat on the mat."), and a stop " on" was missed on the first new word."""
    from llm_bridge.hf_causal import decode_after, stop_in_new_text_class

    tok = metaspace_tokenizer
    text = "The cat sat on the mat."
    ids = tok.encode(text, add_special_tokens=False)
    prompt = tok.encode("The cat", add_special_tokens=False)
    assert ids[:len(prompt)] == prompt
    new = ids[len(prompt):]
    assert not tok.decode(new).startswith(" ")  # (decoded alone, the space is lost: what generate returned)
    assert decode_after(tok, prompt[-1:], new) == " sat on the mat."
    assert decode_after(tok, None, ids) == text
    # a prompt ending in a token that decodes to nothing (here the end-of-text token; a review, 2026-12-06)
    ended = prompt + [tok.eos_token_id]
    assert decode_after(tok, ended[-4:], new) == " sat on the mat."
    import torch

    stop = stop_in_new_text_class()(tok, " sat", len(prompt))
    k = next(k for k in range(1, len(new) + 1) if decode_after(tok, prompt[-1:], new[:k]).startswith(" sat"))
    row = torch.tensor([prompt + new[:k]])  # (the step at which "sat" is complete)
    assert "sat" in tok.decode(new[:k]) and bool(stop(row, None)[0])
    assert not bool(stop_in_new_text_class()(tok, " cat", len(prompt))(row, None)[0])  # (in the prompt only)


def test_weights_dtype_must_be_floating_and_fine_tuning_needs_float32_or_warns(tiny_folder, corpus_texts):
    """A user trial (2026-12-06): dtype="int8" failed in transformers' loader as "is a file truncated or damaged?";
    float16 fine-tuning made every weight NaN at any learning rate (AdamW's eps is 0 in float16) and the message
    blamed the learning rate; bfloat16 fine-tuning silently lost most of its updates."""
    import torch

    from llm_bridge.encoders import torch_dtype
    from llm_bridge.hf_causal import hf_causal_lm

    for bad in ("int8", torch.int64, torch.bool, "float8_e4m3fn", torch.float8_e5m2, torch.complex64):
        with pytest.raises(ValueError, match="dtype must be a floating type"):
            torch_dtype(bad)
    half = hf_causal_lm(tiny_folder, dtype="float16")
    before = [p.detach().clone() for p in half.model.parameters()]
    with pytest.raises(ValueError, match=r"fine-tuning needs float32 .* this model is float16"):
        half.finetune(corpus_texts[:4], steps=1)
    assert all(torch.equal(a, b) for a, b in zip(before, half.model.parameters()))  # (refused before any step)
    with pytest.warns(UserWarning, match="fine-tuning bfloat16 weights"):
        hf_causal_lm(tiny_folder, dtype="bfloat16").finetune(corpus_texts[:4], steps=1, batch_size=2)
