"""Tiny Hugging Face checkpoints built on the spot, so every test runs offline and in seconds.

The bot's core loads models by path through `AutoTokenizer`/`AutoModelFor*`. Tests must exercise
that exact loading code without the hub, so this module writes real checkpoints (random weights,
real tokenizers) to a directory: a cased WordPiece tokenizer shared by three DistilBERT heads
(masked LM, question answering, bare encoder) and a byte-level BPE tokenizer for GPT-2.

Why the tokenizers are assembled with the `tokenizers` library: in transformers 5,
`BertTokenizerFast(vocab_file=...)` and `GPT2TokenizerFast(vocab_file=..., merges_file=...)`
silently build a near-empty vocabulary. Building the backend ourselves and handing it over with
`tokenizer_object=` is the supported path, and `len(tokenizer)` is checked against the intended
size so a regression of that kind fails loudly here instead of as odd test results elsewhere.

The tokenizer classes are the model-specific ones (`DistilBertTokenizerFast`,
`GPT2TokenizerFast`) rather than the generic backend, because that is what real checkpoints name
in `tokenizer_config.json`; reloading then goes through the same rebuild-from-vocab path as
`distilbert-base-cased` and `gpt2` do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers.utils.logging as hf_logging
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece
from tokenizers.trainers import BpeTrainer
from transformers import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertModel,
    DistilBertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    PreTrainedModel,
)

log = logging.getLogger(__name__)

# Both models accept this many positions and both tokenizers report it as `model_max_length`, so
# the QA sliding window and "prompt + 100 new tokens" generation are exercised for real.
MAX_POSITIONS = 128

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
WORDPIECE_SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
ENDOFTEXT = "<|endoftext|>"

_PUNCTUATION = tuple(".,!?;:'\"()[]{}-_/\\&%$#@*+=<>~`^|")
_DIGITS = tuple("0123456789")
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")

# Suffix pieces so unseen words split into several pieces instead of [UNK]. "##ization" is
# deliberately absent so "tokenization" splits into three pieces: token ##iz ##ation.
_SUFFIXES = (
    "s es ed ing ly er ers est iz ize ized ation ations tion ness ment al able ful less ous "
    "ive ity ic ist ism y en an on in ou th ch sh"
).split()

# Words used in lowercase and, below, also capitalized (sentence starts are cased in a cased model).
_WORDS = """
the a an and or but not no yes of to in on at by for with from about as into over under after
before between through during without up down out off than then so if because while when where
who what which why how this that these those here there it its is are was were be hello world
been being am do does did done have has had having will would can could should may might must
shall i me my mine you your yours he him his she her hers we us our they them their one two three
four five six seven eight nine ten first second last next new old good bad great best worst
better worse big small large little long short high low right left young happy sad angry calm
love hate like likes liked loved hated enjoy enjoyed boring exciting terrible awesome amazing
wonderful awful nice fine poor rich beautiful ugly funny serious movie movies film films book
books story stories music song songs game games show actor actress actors plot ending director
man woman men women boy girl child children person people friend friends family mother father
son daughter brother sister king queen prince princess teacher student students doctor nurse
engineer lawyer scientist programmer cook chef driver pilot farmer writer artist worker works
work worked working job jobs as capital city cities country countries town village river rivers
bank banks money cash account loan water lake sea ocean mountain tree trees forest park street
road house home school university hospital office shop store market church station airport
world earth sun moon star stars sky day days night week year years time times morning evening
today tomorrow yesterday monday friday weekend food bread water coffee tea milk apple apples
cat cats dog dogs bird birds fish horse animal animals car cars bus train plane boat bike
red blue green yellow black white color language languages word words sentence text question
answer name names number numbers model models data token computer machine learning neural
network transformer attention layer bot class lesson go goes went gone come came get got make
made take took see saw seen know knew known think thought say said says tell told give gave find
found use used want wanted need needed look looked feel felt try tried call called ask asked
play played read wrote write eat ate drink live lived lives born die died run ran walk walked sit
stand open close opened closed buy bought sell sold pay paid deposit deposited fish fishing
swim swam sleep slept wake woke learn learned teach taught speak spoke speaks spoken listen
watch watched help helped start started stop stopped begin began end ended move moved keep kept
hold held bring brought stay stayed leave left meet met win won lose lost very really quite too
also just only even still already always never often sometimes again almost more most less
least much many few some any all every each other another such same different own well
""".split()

# Words whose capitalized form is useful (sentence starts) beyond proper nouns.
_CAPITALIZED = """
the a an and but not no yes in on at for this that these those it there here i you he she we
they my his her our their who what which why how when where one two is are was were do does
did have has can will would should if after before today yesterday tomorrow monday friday
man woman people hello world
""".split()

_PROPER_NOUNS = """
Paris France London England Berlin Germany Rome Italy Madrid Spain Tokyo Japan Europe America
Africa Asia China India Canada Mexico Brazil Seine Thames Nile Eiffel Tower Einstein Newton
Shakespeare Alice Bob John Mary Discord Python English French German
""".split()


def _wordpiece_vocabulary() -> list[str]:
    """The WordPiece vocabulary in id order: specials first, so [PAD] is 0 as in real BERT."""
    pieces: list[str] = [*WORDPIECE_SPECIAL_TOKENS, *_PUNCTUATION, *_DIGITS]
    pieces += [*_LETTERS, *(c.upper() for c in _LETTERS)]
    pieces += [f"##{c}" for c in (*_LETTERS, *_DIGITS)]
    pieces += [f"##{s}" for s in _SUFFIXES]
    pieces += _WORDS
    pieces += [w.capitalize() for w in _CAPITALIZED]
    pieces += _PROPER_NOUNS
    # dict.fromkeys keeps the first occurrence: the order (and so every id) is deterministic.
    return list(dict.fromkeys(pieces))


WORDPIECE_VOCAB: tuple[str, ...] = tuple(_wordpiece_vocabulary())
WORDPIECE_VOCAB_SIZE = len(WORDPIECE_VOCAB)

# A few paragraphs of plain English for the byte-level BPE. It carries the words the tests and
# demos prompt with, so common words become single tokens as they would in real GPT-2.
BPE_TRAINING_TEXT = """\
The capital of France is Paris. Paris is a large city on the river Seine, and many people visit
it every year to see the Eiffel Tower, the museums and the old streets. The capital of England
is London, and the capital of Germany is Berlin. Rome is the capital of Italy.

Once upon a time there was a little girl who lived in a small village near a forest. Every
morning she walked to school with her brother and her dog. One day they found an old book under
a tree. The book told a story about a king, a queen and a dragon who lived on a mountain. They
read the story again and again, and then they wrote their own story about a brave student.

The man works as a doctor in a big hospital. The woman works as a nurse, and her friend works as
an engineer. My father was a teacher and my mother was a lawyer. I went to the bank to deposit
money, then we sat on the bank of the river and watched the water. People say that time is
money, but a good friend is worth more than money.

This movie was really good. The actors were great, the music was wonderful and the ending made
me happy. That film was bad: the plot was boring, the story was too long and I was sad when it
was over. I love this song. I hate waiting. What a beautiful day! Is it going to rain tomorrow?

A language model reads text as a sequence of tokens. A transformer uses attention to decide
which earlier tokens matter for the next one. Tokenization splits words into smaller pieces, so
even a new word can be written with known pieces. Students in the class ask the bot questions,
and the bot answers with the help of a neural network trained on a lot of data.

In 2024 the weather was warm: 25 degrees in May, 31 degrees in July and 12 degrees in November.
The numbers 1, 2, 3, 10, 100 and 1000 appear in many texts. "Hello," she said. "How are you?"
"""

BPE_VOCAB_SIZE = 700


@dataclass(frozen=True)
class TinyModelPaths:
    """Directories that `from_pretrained` accepts, one checkpoint (model + tokenizer) each."""

    masked_lm: Path  # DistilBertForMaskedLM, cased WordPiece tokenizer
    qa: Path  # DistilBertForQuestionAnswering, same tokenizer
    causal_lm: Path  # GPT2LMHeadModel, byte-level BPE tokenizer
    encoder: Path  # DistilBertModel (sentence features), same WordPiece tokenizer


def build_wordpiece_tokenizer() -> DistilBertTokenizerFast:
    """A cased WordPiece tokenizer in the shape of `distilbert-base-cased`."""
    vocab = {piece: i for i, piece in enumerate(WORDPIECE_VOCAB)}
    backend = Tokenizer(WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100))
    # strip_accents=None follows `lowercase`, exactly what BertTokenizer rebuilds on reload.
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = DistilBertTokenizerFast(
        tokenizer_object=backend,
        # Saved to tokenizer_config.json: the class rebuilds its normalizer from it on reload.
        do_lower_case=False,
        unk_token=UNK,
        sep_token=SEP,
        pad_token=PAD,
        cls_token=CLS,
        mask_token=MASK,
        model_max_length=MAX_POSITIONS,
    )
    _check_size(tokenizer, WORDPIECE_VOCAB_SIZE, "WordPiece")
    return tokenizer


def build_bpe_tokenizer() -> GPT2TokenizerFast:
    """A byte-level BPE in the shape of `gpt2`: any text encodes, and decoding gives it back."""
    backend = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([BPE_TRAINING_TEXT], trainer=trainer)
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=backend,
        unk_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        # GPT-2 has no pad token; reusing EOS (masked out by the attention mask) is the usual fix.
        pad_token=ENDOFTEXT,
        add_prefix_space=False,
        model_max_length=MAX_POSITIONS,
    )
    _check_size(tokenizer, BPE_VOCAB_SIZE, "byte-level BPE")
    return tokenizer


def _check_size(tokenizer: object, expected: int, what: str) -> None:
    """Fail at build time if a library change quietly shrank or grew the vocabulary."""
    actual = len(tokenizer)  # type: ignore[arg-type]
    if actual != expected:
        raise RuntimeError(f"{what} tokenizer has {actual} tokens, expected {expected}")


def _distilbert_config(tokenizer: DistilBertTokenizerFast) -> DistilBertConfig:
    return DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
    )


def _gpt2_config(tokenizer: GPT2TokenizerFast) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _save(model: PreTrainedModel, tokenizer: object, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]
    return directory


def build_tiny_models(root: Path, *, seed: int = 0) -> TinyModelPaths:
    """Write four tiny checkpoints under `root`; the same seed gives identical weights.

    The global torch RNG is restored afterwards so building models does not change the random
    numbers of the test that asked for them.
    """
    root = Path(root)
    # Four "Writing model shards" bars per build would bury real test output.
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _build(root, seed)
    finally:
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _build(root: Path, seed: int) -> TinyModelPaths:
    wordpiece = build_wordpiece_tokenizer()
    bpe = build_bpe_tokenizer()
    bert_config = _distilbert_config(wordpiece)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        masked_lm = _save(DistilBertForMaskedLM(bert_config), wordpiece, root / "masked_lm")
        torch.manual_seed(seed + 1)
        qa = _save(DistilBertForQuestionAnswering(bert_config), wordpiece, root / "qa")
        torch.manual_seed(seed + 2)
        encoder = _save(DistilBertModel(bert_config), wordpiece, root / "encoder")
        torch.manual_seed(seed + 3)
        gpt2 = GPT2LMHeadModel(_gpt2_config(bpe))
        # generate() warns when pad_token_id is unset and it has to borrow eos itself.
        gpt2.generation_config.pad_token_id = bpe.eos_token_id
        gpt2.generation_config.bos_token_id = bpe.bos_token_id
        gpt2.generation_config.eos_token_id = bpe.eos_token_id
        causal_lm = _save(gpt2, bpe, root / "causal_lm")

    log.debug("built tiny models under %s (seed %d)", root, seed)
    return TinyModelPaths(masked_lm=masked_lm, qa=qa, causal_lm=causal_lm, encoder=encoder)
