"""A judge model scores an answer: correctness against the references, faithfulness to the
passages the answering model was given, each 1-5.

The judge is any model of any configured server, asked through `ModelHub.structured` with a JSON
schema (temperature 0; for Ollama `format=<schema>`, `stream=False`, `num_ctx` set to the
judge's window). A reply that is not a JSON object with both scores as whole numbers 1-5 is
asked for once more; a second bad reply (or a server error) leaves the answer *unscored*, with
the reason, and the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eval.dataset import QAItem
from rag.errors import KBError, MalformedReplyError
from rag.llm.hub import ModelHub

ATTEMPTS = 2
JUDGE_ANSWER_TOKENS = 256
MAX_PASSAGE_CHARS = 12_000  # the judge reads at most this much of the passages

# An enum, not minimum/maximum: llama.cpp's grammar from a schema enforces enums but ignores
# numeric bounds, and small models do answer -1.
SCORE = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correctness": SCORE,
        "faithfulness": SCORE,
        "reason": {"type": "string"},
    },
    "required": ["correctness", "faithfulness", "reason"],
}

JUDGE_INSTRUCTIONS = """You grade an answer that a question-answering system gave from \
numbered passages. Reply with a JSON object only.
- correctness (1-5): does the answer agree with the reference answers? 5 = fully correct, \
3 = partly correct or incomplete, 1 = wrong or missing. If the references say the question has \
no answer, 5 = the answer says so, 1 = it makes one up.
- faithfulness (1-5): is every statement of the answer supported by the passages? 5 = all \
supported, 3 = some unsupported details, 1 = mostly unsupported. Saying that the passages do \
not contain the answer is faithful when they do not.
- reason: one short sentence."""


@dataclass(frozen=True)
class Verdict:
    correctness: int | None
    faithfulness: int | None
    reason: str | None = None
    error: str | None = None  # why the answer is unscored
    attempts: int = 0

    @property
    def scored(self) -> bool:
        return self.correctness is not None and self.faithfulness is not None


class MalformedVerdict(ValueError):
    """The judge's reply does not fit the schema."""


def judge_messages(item: QAItem, answer: str, passages: Sequence[str]) -> list[dict[str, str]]:
    references = (
        "(none: no document answers this question)"
        if item.unanswerable
        else "; ".join(item.answers)
    )
    numbered = "\n\n".join(f"[{n}] {text.strip()}" for n, text in enumerate(passages, 1))
    body = (
        f"<passages>\n{numbered[:MAX_PASSAGE_CHARS] or '(no passages)'}\n</passages>\n\n"
        f"Question: {item.question}\n"
        f"Reference answers: {references}\n"
        f"Answer to grade: {answer.strip() or '(empty)'}"
    )
    return [
        {"role": "system", "content": JUDGE_INSTRUCTIONS},
        {"role": "user", "content": body},
    ]


def parse_verdict(text: str) -> Verdict:
    """The scores in a judge reply's text; raises MalformedVerdict when they are not there."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise MalformedVerdict("the reply is not JSON") from None
    return verdict_from(data)


def verdict_from(data: Any) -> Verdict:
    """The scores in a judge reply's parsed JSON; raises MalformedVerdict when they are not
    there (a whole number 1-5 written as "4" or 4.0 is accepted)."""
    if not isinstance(data, Mapping):
        raise MalformedVerdict("the reply is not a JSON object")
    reason = data.get("reason")
    return Verdict(
        correctness=_score(data, "correctness"),
        faithfulness=_score(data, "faithfulness"),
        reason=reason if isinstance(reason, str) else None,
    )


def _score(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise MalformedVerdict(f"'{key}' is not a whole number from 1 to 5")
    return value


def judge_answer(
    models: ModelHub,
    judge_id: str,
    window: int,
    item: QAItem,
    answer: str,
    passages: Sequence[str],
) -> Verdict:
    """Ask the judge `judge_id` (a model id) with `window` tokens of context, once more after a
    bad reply. Never raises for the judge's failures: a malformed reply (`MalformedReplyError`,
    or JSON without the scores) or any other `KBError` twice gives an unscored `Verdict` with
    the reason in `error`."""
    messages = judge_messages(item, answer, passages)
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            reply = models.structured(
                judge_id, messages, JUDGE_SCHEMA, window=window, max_tokens=JUDGE_ANSWER_TOKENS
            )
            verdict = verdict_from(reply)
        except (MalformedVerdict, MalformedReplyError) as err:
            problem = f"malformed judge output ({str(err).rstrip('.')})"
            continue
        except KBError as err:
            problem = str(err)
            continue
        return Verdict(verdict.correctness, verdict.faithfulness, verdict.reason, None, attempt)
    return Verdict(None, None, None, problem, ATTEMPTS)
