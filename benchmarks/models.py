"""Real-size random-weight checkpoints, so benchmark figures are real-size without a download.

The architectures are written out by hand from the real defaults' configs (distilbert-base-cased:
dim 768, 6 layers, 12 heads, vocab 28996, 512 positions; gpt2: 768, 12 layers, 12 heads, vocab
50257, 1024 positions), so every matrix multiply has the real shape. Weights are random, so the
answers are nonsense, but the cost of a forward does not depend on what the weights are.

The tokenizers matter for two things only: sequence lengths (how many tokens a typical /mask
sentence becomes) and vocabulary size (the cost of the output projection). So a cased WordPiece
and a byte-level BPE are *trained* on local English text (SST-2 sentences plus the docstrings of
Python's standard library, a few MB), which gives realistic word splits, and then padded with
unreachable synthetic entries up to exactly 28996 / 50257 tokens.

One deliberate change to GPT-2: the `<|endoftext|>` embedding row (tied to the output
projection) is zeroed, so its logit is always 0 and random weights never choose it. Every
sequence then runs the full `max_new_tokens`, which is what a fair tokens-per-second comparison
with `min_new_tokens=max_new_tokens` needs.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece
from tokenizers.trainers import BpeTrainer, WordPieceTrainer

log = logging.getLogger(__name__)

#: Bump when anything below changes, so a stale cache is rebuilt instead of silently reused.
BUILD_VERSION = 1
DEFAULT_CACHE = Path.home() / ".cache" / "tlm-bot-bench"
#: SST-2 in ../shared beside the repository; `TLM_BOT_SST2` names it for a checkout elsewhere.
SST2 = Path(os.environ.get("TLM_BOT_SST2")
            or Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2")

WORDPIECE_SIZE = 28996
BPE_SIZE = 50257
BERT_POSITIONS = 512
GPT2_POSITIONS = 1024
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
ENDOFTEXT = "<|endoftext|>"


@dataclass(frozen=True)
class BenchModelPaths:
    masked_lm: Path  # DistilBertForMaskedLM (also serves /tokens wordpiece and features)
    qa: Path  # DistilBertForQuestionAnswering
    causal_lm: Path  # GPT2LMHeadModel


def corpus_lines() -> list[str]:
    """A few MB of local English: SST-2 sentences (lower-cased) and stdlib docstrings (cased)."""
    lines: list[str] = []
    for name in ("train.tsv", "dev.tsv"):
        path = SST2 / name
        if path.exists():
            lines += [row.split("\t")[0] for row in path.read_text(encoding="utf-8").splitlines()]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for source in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in source.parts[-2:][0] or source.name.startswith("test"):
            continue
        try:
            tree = ast.parse(source.read_text(encoding="utf-8", errors="ignore"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    lines += [line.strip() for line in doc.splitlines() if line.strip()]
    return lines


def _pad_vocab(backend: Tokenizer, size: int, name: str) -> Tokenizer:
    """Add unreachable model-vocabulary entries until the tokenizer has exactly `size` tokens."""
    data = json.loads(backend.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    n = 0
    while len(vocab) < size:
        vocab.setdefault(f"[{name}{n}]", len(vocab))
        n += 1
    return Tokenizer.from_str(json.dumps(data))


def build_wordpiece(lines: list[str]):
    from transformers import DistilBertTokenizerFast

    backend = Tokenizer(WordPiece(unk_token=UNK, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(
        vocab_size=WORDPIECE_SIZE, special_tokens=[PAD, UNK, CLS, SEP, MASK],
        continuing_subword_prefix="##", show_progress=False,
    )
    backend.train_from_iterator(lines, trainer=trainer)
    backend = _pad_vocab(backend, WORDPIECE_SIZE, "unused")
    vocab = backend.get_vocab()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return DistilBertTokenizerFast(
        tokenizer_object=backend, do_lower_case=False, unk_token=UNK, sep_token=SEP,
        pad_token=PAD, cls_token=CLS, mask_token=MASK, model_max_length=BERT_POSITIONS,
    )


def build_bpe(lines: list[str]):
    from transformers import GPT2TokenizerFast

    backend = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = BpeTrainer(
        vocab_size=BPE_SIZE - 1, min_frequency=2, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(lines, trainer=trainer)
    backend = _pad_vocab(backend, BPE_SIZE - 1, "bpe")
    backend.add_special_tokens([ENDOFTEXT])  # id 50256, as in GPT-2
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return GPT2TokenizerFast(
        tokenizer_object=backend, unk_token=ENDOFTEXT, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT, add_prefix_space=False, model_max_length=GPT2_POSITIONS,
    )


def _check(directory: Path, expected: int) -> None:
    from transformers import AutoTokenizer

    actual = len(AutoTokenizer.from_pretrained(directory))
    if actual != expected:
        raise RuntimeError(f"{directory}: reloaded tokenizer has {actual} tokens, not {expected}")


def build_models(cache: Path = DEFAULT_CACHE, *, force: bool = False) -> BenchModelPaths:
    """Build (or reuse) the three checkpoints under `cache`; ~30-60 s the first time."""
    import transformers.utils.logging as hf_logging
    from transformers import (
        DistilBertConfig,
        DistilBertForMaskedLM,
        DistilBertForQuestionAnswering,
        GPT2Config,
        GPT2LMHeadModel,
    )

    root = Path(cache) / f"v{BUILD_VERSION}"
    paths = BenchModelPaths(root / "distilbert-mlm", root / "distilbert-qa", root / "gpt2")
    done = root / "DONE"
    if done.exists() and not force:
        return paths
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    lines = corpus_lines()
    wordpiece = build_wordpiece(lines)
    bpe = build_bpe(lines)
    log.info("tokenizers trained on %d lines in %.1fs", len(lines), time.perf_counter() - started)
    bert = DistilBertConfig(
        vocab_size=WORDPIECE_SIZE, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
        max_position_embeddings=BERT_POSITIONS, pad_token_id=wordpiece.pad_token_id,
    )
    gpt2_config = GPT2Config(
        vocab_size=BPE_SIZE, n_embd=768, n_layer=12, n_head=12, n_positions=GPT2_POSITIONS,
        bos_token_id=bpe.eos_token_id, eos_token_id=bpe.eos_token_id,
        pad_token_id=bpe.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for model, tokenizer, directory in (
            (DistilBertForMaskedLM(bert), wordpiece, paths.masked_lm),
            (DistilBertForQuestionAnswering(bert), wordpiece, paths.qa),
        ):
            directory.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
        gpt2 = GPT2LMHeadModel(gpt2_config)
        with torch.no_grad():
            gpt2.transformer.wte.weight[bpe.eos_token_id].zero_()
        gpt2.generation_config.pad_token_id = bpe.eos_token_id
        gpt2.generation_config.eos_token_id = bpe.eos_token_id
        gpt2.generation_config.bos_token_id = bpe.eos_token_id
        paths.causal_lm.mkdir(parents=True, exist_ok=True)
        gpt2.save_pretrained(paths.causal_lm)
        bpe.save_pretrained(paths.causal_lm)
    _check(paths.masked_lm, WORDPIECE_SIZE)
    _check(paths.causal_lm, BPE_SIZE)
    done.write_text(f"built in {time.perf_counter() - started:.1f}s\n")
    log.info("built benchmark models under %s in %.1fs", root, time.perf_counter() - started)
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(build_models(force="--force" in sys.argv))
