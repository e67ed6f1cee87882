"""`/qa`: extract the answer span of a question from a context.

transformers 5 removed the extractive question-answering pipeline, so span decoding is ours. It
follows the old pipeline's rules: the context is cut into overlapping windows (stride) so a long
context never crashes or loses its end; in each window only context tokens may start or end an
answer, start <= end, at most `max_answer_tokens` long; the score of a span is
p(start) * p(end) with the softmax taken over the window's context tokens; the best span over all
windows wins. Every window of every request in a batch goes through one padded forward.

Answers are whole words, as the 4.x pipeline's default `align_to_words=True` made them: see
`align_to_words`. tests/test_qa_pipeline_parity.py checks answers and offsets against a fixture
the transformers 4.57 pipeline produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, clean_text, too_long
from core.inference.tasks.padding import length_slices


@dataclass(frozen=True)
class QARequest:
    question: str
    context: str


@dataclass(frozen=True)
class QAResult:
    model_id: str
    question: str
    context: str
    answer: str
    score: float
    #: Character offsets of the answer in `context`.
    start: int
    end: int
    windows: int = 1
    timings: Timings | None = None


class QATask(Task[QARequest, QAResult]):
    name = "qa"
    needs = {"qa": frozenset({Head.QA})}
    request_type = QARequest

    def validate(self, request: QARequest) -> QARequest:
        question = clean_text(
            request.question, what=lazy("question"), max_chars=self.limits.max_question_chars
        )
        context = clean_text(
            request.context, what=lazy("context"), max_chars=self.limits.max_context_chars
        )
        return QARequest(question, context)

    def preprocess(self, model: LoadedModel, request: QARequest) -> QARequest:
        # The question must leave room for a useful slice of context.
        cap = model.max_length // 2
        if error := too_long(
            model, len(model.tokenizer(request.question)["input_ids"]), what=lazy("The question"),
            cap=cap, advice=lazy("Try a shorter question."),
            cap_reason=lazy("the model must read the context beside it, so a question may "
                            "have at most {n}", n=cap),
        ):
            raise error
        return request

    def forward(self, model: LoadedModel, inputs: Sequence[QARequest],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        """Per request: (score, start, end) of the best answer, and the windows read."""
        tokenizer = model.tokenizer
        max_length = model.max_length
        # The window overlap must leave each window mostly new context (tiny test models have
        # 128-token windows).
        stride = min(self.limits.qa_stride, max_length // 4)
        enc = tokenizer(
            [r.question for r in inputs],
            [r.context for r in inputs],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=True,
            return_tensors="pt",
        )
        qa = model.module(Head.QA)
        starts, ends = _forward_by_length(
            qa, enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device),
            tokenizer.padding_side,
        )
        # Per request, candidate answers in the order first seen: lowercased text -> [score,
        # start, end]. Token spans that widen to the same words pool their scores (see
        # `align_to_words`).
        candidates: dict[int, dict[str, list]] = {}
        windows: dict[int, int] = {}
        for window, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
            in_context = torch.tensor(
                [s == 1 for s in enc.sequence_ids(window)], dtype=torch.bool
            )
            spans = best_spans(
                starts[window], ends[window], in_context, self.limits.max_answer_tokens,
                ALIGN_CANDIDATES,
            )
            windows[sample] = windows.get(sample, 0) + 1
            context = inputs[sample].context
            pool = candidates.setdefault(sample, {})
            for score, s, e in spans:
                start, end = align_to_words(enc, window, s, e)
                key = context[start:end].lower()
                if key in pool:
                    pool[key][0] += score
                else:
                    pool[key] = [score, start, end]
        for sample in range(len(inputs)):
            pool = candidates.get(sample, {})
            # max() keeps the first of equal scores, as the pipeline's stable sort did.
            score, start, end = max(pool.values(), key=lambda c: c[0], default=(0.0, 0, 0))
            yield sample, (score, start, end, windows.get(sample, 1))

    def postprocess(self, model: LoadedModel, request: QARequest, prepared: QARequest,
                    output: tuple[float, int, int, int]) -> QAResult:
        score, start, end, windows = output
        return QAResult(
            model_id=str(model.spec),
            question=request.question,
            context=request.context,
            answer=request.context[start:end],
            score=score,
            start=start,
            end=end,
            windows=windows,
        )


#: How many of a window's best token spans are widened to words and pooled: the 4.x pipeline's
#: `top_k * 2 + 10` for top_k=1.
ALIGN_CANDIDATES = 12


def align_to_words(enc, window: int, s: int, e: int) -> tuple[int, int]:
    """Character span of tokens s..e in the context, widened to whole words.

    A span that starts or ends inside a word ("##iz ##ation" of "tokenization") is widened to
    the whole word, as the transformers 4.x QA pipeline did by default (align_to_words=True):
    students get "tokenization", never "ization" or "024" out of "2024", and answers keep the
    meaning of the 4.x bot. Words are the tokenizer's pre-tokenizer words (for BERT, split at
    whitespace and punctuation). Because several token spans widen to the same words, the
    caller pools their scores by answer text (case-insensitive), again as 4.x did; that pooling
    often decides the answer. A tokenizer without word ids keeps the token offsets, as 4.x did.
    """
    try:
        start_word = enc.token_to_word(window, s)
        end_word = enc.token_to_word(window, e)
        if start_word is None or end_word is None:
            raise ValueError("no word ids")
        start = enc.word_to_chars(window, start_word, sequence_index=1)[0]
        end = enc.word_to_chars(window, end_word, sequence_index=1)[1]
    except Exception:
        offsets = enc["offset_mapping"][window]
        start, end = int(offsets[s][0]), int(offsets[e][1])
    return int(start), int(end)


def best_spans(
    start_logits: torch.Tensor, end_logits: torch.Tensor, in_context: torch.Tensor,
    max_tokens: int, count: int,
) -> list[tuple[float, int, int]]:
    """Up to `count` best (score, start, end) token spans inside the context, best first."""
    if not bool(in_context.any()):
        return []
    neg = torch.finfo(start_logits.dtype).min
    p_start = start_logits.masked_fill(~in_context, neg).softmax(-1)
    p_end = end_logits.masked_fill(~in_context, neg).softmax(-1)
    scores = p_start[:, None] * p_end[None, :]
    n = scores.shape[0]
    # Keep start <= end <= start + max_tokens - 1: an upper band of the outer product.
    band = torch.ones(n, n, dtype=torch.bool).triu().tril(max_tokens - 1)
    allowed = band & in_context[:, None] & in_context[None, :]
    scores = scores.masked_fill(~allowed, -1.0).flatten()
    top = scores.topk(min(count, int(allowed.sum())))  # sorted, best first
    return [
        (float(value), *divmod(int(flat), n))
        for value, flat in zip(top.values, top.indices, strict=True)
    ]


def _forward_by_length(
    qa, input_ids: torch.Tensor, attention_mask: torch.Tensor, padding_side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end logits of every window, from forwards over windows of similar length.

    Contexts vary a lot in length, and one batch padded to the longest wastes most of its work
    on padding (benchmarks/RESULTS.md, "Figures behind the code"). Positions a group does not
    compute stay 0; they are padding, which `best_spans` never considers.
    """
    starts = torch.zeros(input_ids.shape, dtype=torch.float32)
    ends = torch.zeros(input_ids.shape, dtype=torch.float32)
    for index, cols in length_slices(attention_mask, padding_side):
        rows = index.to(input_ids.device)
        out = qa(input_ids=input_ids[rows, cols], attention_mask=attention_mask[rows, cols])
        starts[index, cols] = out.start_logits.float().cpu()
        ends[index, cols] = out.end_logits.float().cpu()
    return starts, ends
