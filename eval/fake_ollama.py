"""A fake Ollama server for tests and demos: real HTTP on loopback, Ollama's JSON shapes.

Standalone: `python -m eval.fake_ollama --port 11435`. In-process:

    with FakeOllama() as server:      # or server.start() ... server.stop()
        ollama.Client(host=server.url).chat(...)
        server.requests_to("/api/chat")[-1].options["num_ctx"]

Endpoints: GET /api/version, /api/tags, /api/ps; POST /api/show, /api/chat (NDJSON stream or one
object), /api/pull (streamed status lines). An unknown model is a 404 with
`{"error": "model \"x\" not found, try pulling it first"}`. Models (`DEFAULT_MODELS`, or pass
your own `FakeModel`s): fake-llama3:8b (llama, 131072), fake-mistral:7b (llama, 32768),
fake-qwen2:7b (qwen2, 32768), fake-tiny:1b (llama, 2048), fake-broken:1b, and fake-phi3:3.8b,
which is not pulled until a `/api/pull` asks for it.

How the fake imitates Ollama where it matters:

- Tokens. The one "true" tokenizer is `TOKEN_RE` (`\\w+|[^\\w\\s]`). A chat prompt costs
  `PROMPT_OVERHEAD_TOKENS` (begin-of-text, then the assistant header at the end) plus, for each
  message, `MESSAGE_OVERHEAD_TOKENS` (role header and end of turn) and its content's tokens.
  `prompt_token_count()` computes it; clients are not meant to know it.
- Context. `options.num_ctx` (4096 when absent, capped at the model's trained context, as Ollama
  does) bounds the prompt. A longer prompt is cut silently, like Ollama: first the longest run of
  newest messages that fits is kept, with the system messages before it (the last message always
  stays); if that is still too long, the first `num_keep` tokens (default 4) and the tail are kept
  and the middle is dropped, so the prompt is exactly num_ctx tokens. `prompt_eval_count` is the
  number of tokens kept. `options.num_predict` caps the answer (done_reason "length").
- Answers are extractive, from the text that survived the cut. Passages are read from the last
  message, within kb's block `<passages-CODE>` … `</passages-CODE>` when it has one (the same
  code in both tags; a `</passages>` or a tag with another code inside is passage text), else
  before the last line starting `Question:` and a plain `</passages>`. A passage starts with
  `[n]` at a line start; its first line is the source line and the following lines are the
  text, up to the next `[n]` or the block's end. The question is what follows the last line
  starting `Question:` (after the block, when there is one), else the whole message. The
  answer is the passage sentence sharing the most content words with the question (stopwords
  ignored, a plural "s" stripped), followed by ` [n]`; at least half of the question's content
  words must be shared, otherwise the answer is `NO_ANSWER`.
- Rewriting. A last message starting `Rewrite as a standalone question:` gets back the follow-up
  (the rest of that line; else a `Follow-up:` or `Question:` line; else the last line) with the
  content words of the previous user question that it lacks appended in parentheses:
  "How tall is it?" after "When was the Eiffel Tower built?" gives
  "How tall is it (Eiffel Tower built)?". The previous question is the last `User:` line of the
  message, else the last earlier user message of the request; without one the follow-up is
  returned unchanged.
- Structured output. `format="json"` gives `{"answer": <sentence>}`; a JSON schema gives an
  object with the schema's required properties (all properties when none is required): integers
  and numbers 3 moved into the schema's range, strings the best-matching sentence (else the first
  passage sentence, else the question), booleans true, arrays of `minItems` (at least 1) items,
  enums their first value (numeric ones the value nearest 3); `$ref`s into `$defs` are followed.
- `fake-broken:1b` always answers with malformed, unterminated JSON-ish text.
- Failure injection (constructor arguments, or attributes changed while running):
  `first_token_delay_s` before the first chunk (or before a non-streamed reply; like Ollama, a
  stream's HTTP headers leave only with its first chunk), during which a client that closes the
  connection is noticed at once (`clients_gone`, `gone_at`),
  `token_delay_s` between chunks, `fail_after_tokens` = n sends `{"error": stream_error}` after
  n chunks of a stream (a non-streamed reply becomes HTTP 500). A server that is down is one that
  was never started or was stopped; `unused_loopback_url()` gives an address nobody listens on.
- Prompt cache. With `report_uncached_only`, `prompt_eval_count` counts only the tokens after
  the leading messages the model's previous request had in common (as servers that report
  evaluated tokens do when their prompt cache holds the rest): the same question asked twice
  reports a single token.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# One streamed piece per "true" token, carrying the whitespace before it, so pieces join exactly.
ANSWER_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
PROMPT_LEADING_TOKENS = 1
PROMPT_TRAILING_TOKENS = 2
PROMPT_OVERHEAD_TOKENS = PROMPT_LEADING_TOKENS + PROMPT_TRAILING_TOKENS
MESSAGE_HEADER_TOKENS = 2
MESSAGE_FOOTER_TOKENS = 2
MESSAGE_OVERHEAD_TOKENS = MESSAGE_HEADER_TOKENS + MESSAGE_FOOTER_TOKENS
DEFAULT_NUM_CTX = 4096
DEFAULT_NUM_KEEP = 4
NO_ANSWER = "The provided passages do not contain the answer."
REWRITE_PREFIX = "Rewrite as a standalone question:"
DEFAULT_STREAM_ERROR = "an error was encountered while running the model: fake failure"
FAKE_VERSION = "0.6.5-fake"
MODIFIED_AT = "2025-01-01T00:00:00Z"
# Synthetic speeds that make the reported durations plausible and deterministic.
LOAD_NS = 2_000_000
PROMPT_NS_PER_TOKEN = 100_000
EVAL_NS_PER_TOKEN = 5_000_000
KEEP_ALIVE = timedelta(minutes=5)
SHUTDOWN_POLL_S = 0.05  # how soon stop() returns
CLIENT_POLL_S = 0.01  # how often a pause looks whether the client closed the connection

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my no
    nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    question passage passages"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class FakeModel:
    name: str
    architecture: str
    context_length: int
    parameter_count: int
    parameter_size: str
    quantization: str
    block_count: int
    head_count: int
    head_count_kv: int
    embedding_length: int
    family: str
    size_bytes: int
    broken: bool = False
    installed: bool = True

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    def model_info(self) -> dict[str, Any]:
        arch = self.architecture
        return {
            "general.architecture": arch,
            "general.basename": self.name.split(":")[0],
            "general.parameter_count": self.parameter_count,
            "general.quantization_version": 2,
            f"{arch}.context_length": self.context_length,
            f"{arch}.block_count": self.block_count,
            f"{arch}.attention.head_count": self.head_count,
            f"{arch}.attention.head_count_kv": self.head_count_kv,
            f"{arch}.embedding_length": self.embedding_length,
            "tokenizer.ggml.model": "fake",
        }


def _llama_like(name: str, context_length: int, **overrides: Any) -> FakeModel:
    values: dict[str, Any] = {
        "name": name,
        "architecture": "llama",
        "context_length": context_length,
        "parameter_count": 8_030_261_248,
        "parameter_size": "8.0B",
        "quantization": "Q4_K_M",
        "block_count": 32,
        "head_count": 32,
        "head_count_kv": 8,
        "embedding_length": 4096,
        "family": "llama",
        "size_bytes": 4_920_753_328,
    }
    return FakeModel(**{**values, **overrides})


_TINY = {
    "parameter_count": 1_100_048_384,
    "parameter_size": "1.1B",
    "quantization": "Q4_0",
    "block_count": 22,
    "head_count": 32,
    "head_count_kv": 4,
    "embedding_length": 2048,
    "size_bytes": 637_700_138,
}

DEFAULT_MODELS: tuple[FakeModel, ...] = (
    _llama_like("fake-llama3:8b", 131072),
    _llama_like(
        "fake-mistral:7b",
        32768,
        parameter_count=7_248_023_552,
        parameter_size="7.2B",
        quantization="Q4_0",
        size_bytes=4_113_301_824,
    ),
    _llama_like(
        "fake-qwen2:7b",
        32768,
        architecture="qwen2",
        family="qwen2",
        parameter_count=7_615_616_512,
        parameter_size="7.6B",
        quantization="Q4_0",
        block_count=28,
        head_count=28,
        head_count_kv=4,
        embedding_length=3584,
        size_bytes=4_431_400_262,
    ),
    _llama_like("fake-tiny:1b", 2048, **_TINY),
    _llama_like("fake-broken:1b", 2048, broken=True, **_TINY),
    _llama_like(
        "fake-phi3:3.8b",
        131072,
        architecture="phi3",
        family="phi3",
        parameter_count=3_821_079_552,
        parameter_size="3.8B",
        quantization="Q4_0",
        block_count=32,
        head_count=32,
        head_count_kv=32,
        embedding_length=3072,
        size_bytes=2_176_178_913,
        installed=False,
    ),
)


# -- tokens and the silent cut -----------------------------------------------------------------


@dataclass(frozen=True)
class PromptToken:
    message: int  # index of its message; -1 for the prompt's own template tokens
    start: int = -1  # span in the message content; -1 for template tokens
    end: int = -1


@dataclass(frozen=True)
class PromptView:
    """What survived the context window: the text each kept message still has, in order."""

    seen: list[tuple[str, str]]
    total_tokens: int
    kept_tokens: int
    kept_messages: list[int]


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def _content(message: Mapping[str, Any]) -> str:
    return str(message.get("content") or "")


def message_token_count(message: Mapping[str, Any]) -> int:
    return MESSAGE_OVERHEAD_TOKENS + count_tokens(_content(message))


def prompt_token_count(messages: Sequence[Mapping[str, Any]]) -> int:
    """The fake's true prompt size, before any cut."""
    return PROMPT_OVERHEAD_TOKENS + sum(message_token_count(m) for m in messages)


def messages_that_fit(messages: Sequence[Mapping[str, Any]], num_ctx: int) -> list[int]:
    """Ollama's first cut: the longest suffix that fits, plus the system messages before it."""
    counts = [message_token_count(m) for m in messages]
    first_kept = len(messages) - 1
    for start in range(len(messages) - 1, -1, -1):
        systems_before = sum(counts[i] for i in range(start) if _is_system(messages[i]))
        if PROMPT_OVERHEAD_TOKENS + systems_before + sum(counts[start:]) > num_ctx:
            break
        first_kept = start
    systems = [i for i in range(first_kept) if _is_system(messages[i])]
    return systems + list(range(first_kept, len(messages)))


def _is_system(message: Mapping[str, Any]) -> bool:
    return message.get("role") == "system"


def _template_tokens(messages: Sequence[Mapping[str, Any]], kept: list[int]) -> list[PromptToken]:
    tokens = [PromptToken(-1)] * PROMPT_LEADING_TOKENS
    for index in kept:
        tokens += [PromptToken(index)] * MESSAGE_HEADER_TOKENS
        tokens += [
            PromptToken(index, m.start(), m.end())
            for m in TOKEN_RE.finditer(_content(messages[index]))
        ]
        tokens += [PromptToken(index)] * MESSAGE_FOOTER_TOKENS
    return tokens + [PromptToken(-1)] * PROMPT_TRAILING_TOKENS


def _cut_middle(
    tokens: list[PromptToken], num_ctx: int, num_keep: int
) -> list[tuple[int, PromptToken]]:
    """Ollama's second cut: keep the first num_keep tokens and the tail, drop the middle."""
    indexed = list(enumerate(tokens))
    if len(tokens) <= num_ctx:
        return indexed
    keep = min(max(num_keep, 0), num_ctx)
    tail = num_ctx - keep
    return indexed[:keep] + (indexed[len(tokens) - tail :] if tail else [])


def _surviving_text(
    messages: Sequence[Mapping[str, Any]], kept: list[tuple[int, PromptToken]]
) -> dict[int, str]:
    """Each message's kept content (pieces on both sides of the middle cut joined by a line
    break). Text whose `[n]` line was cut away belongs to no passage and cannot be cited."""
    runs: dict[int, list[list[int]]] = {}
    last_position: dict[int, int] = {}
    for position, token in kept:
        if token.start < 0:
            continue
        spans = runs.setdefault(token.message, [])
        if spans and last_position[token.message] == position - 1:
            spans[-1][1] = token.end
        else:
            spans.append([token.start, token.end])
        last_position[token.message] = position
    return {
        index: "\n".join(_content(messages[index])[start:end] for start, end in spans)
        for index, spans in runs.items()
    }


def fit_prompt(
    messages: Sequence[Mapping[str, Any]], num_ctx: int, num_keep: int = DEFAULT_NUM_KEEP
) -> PromptView:
    """Apply both of Ollama's silent cuts and report what the model gets to see."""
    kept_messages = messages_that_fit(messages, num_ctx) if messages else []
    tokens = _template_tokens(messages, kept_messages)
    kept = _cut_middle(tokens, num_ctx, num_keep)
    texts = _surviving_text(messages, kept)
    present = {token.message for _, token in kept}
    seen = [
        (str(messages[i].get("role", "user")), texts.get(i, ""))
        for i in kept_messages
        if i in present
    ]
    return PromptView(seen, prompt_token_count(messages), len(kept), kept_messages)


# -- the extractive "model" --------------------------------------------------------------------

PASSAGE_HEADER_RE = re.compile(r"^\[(\d+)\][^\n]*$", re.MULTILINE)
PASSAGES_OPEN_RE = re.compile(r"<passages-(\w+)>")
QUESTION_LINE_RE = re.compile(r"^[ \t]*Question:[ \t]*", re.MULTILINE)
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class Passage:
    number: int
    text: str


def _last_question_line(message: str) -> re.Match[str] | None:
    # the last one: a passage may quote a "Question:" line of its own (a FAQ, say)
    found = list(QUESTION_LINE_RE.finditer(message))
    return found[-1] if found else None


def _tagged_block(message: str) -> tuple[str, str] | None:
    """kb's block `<passages-CODE>` … `</passages-CODE>` (the code is the request's): the text
    between the tags and what follows the closing tag; None without such a block."""
    for opening in PASSAGES_OPEN_RE.finditer(message):
        closing = message.find(f"</passages-{opening.group(1)}>", opening.end())
        if closing >= 0:
            after = message.index(">", closing) + 1
            return message[opening.end() : closing], message[after:]
    return None


def parse_passages(message: str) -> list[Passage]:
    tagged = _tagged_block(message)
    if tagged is not None:
        block = tagged[0]
    else:
        question = _last_question_line(message)
        block = message[: question.start()] if question else message
        block = block.split("</passages>", 1)[0]
    headers = list(PASSAGE_HEADER_RE.finditer(block))
    passages = []
    for index, header in enumerate(headers):
        stop = headers[index + 1].start() if index + 1 < len(headers) else len(block)
        body = block[header.end() : stop]
        if not body.strip():  # the text sits on the `[n]` line itself
            body = header.group(0)[len(header.group(1)) + 2 :]
        passages.append(Passage(int(header.group(1)), body.replace("<passages>", "").strip()))
    return passages


def parse_question(message: str) -> str:
    tagged = _tagged_block(message)
    if tagged is not None:
        rest = tagged[1]
        found = _last_question_line(rest)
        return (rest[found.end() :] if found else rest).strip()
    found = _last_question_line(message)
    return (message[found.end() :] if found else message).strip()


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _is_content_word(word: str) -> bool:
    lowered = word.lower()
    return lowered not in STOPWORDS and (len(lowered) > 1 or lowered.isdigit())


def content_words(text: str) -> set[str]:
    return {_stem(w.lower()) for w in WORD_RE.findall(text) if _is_content_word(w)}


def sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in SENTENCE_SPLIT_RE.split(text) if s.strip()]


def best_sentence(passages: list[Passage], question: str) -> tuple[str, int] | None:
    """The sentence sharing most content words with the question, if it shares enough."""
    wanted = content_words(question)
    if not wanted:
        return None
    needed = max(1, math.ceil(len(wanted) / 2))
    best: tuple[int, str, int] | None = None
    for passage in passages:
        for sentence in sentences(passage.text):
            overlap = len(wanted & content_words(sentence))
            if overlap >= needed and (best is None or overlap > best[0]):
                best = (overlap, sentence, passage.number)
    return (best[1], best[2]) if best else None


def extractive_answer(message: str) -> str:
    found = best_sentence(parse_passages(message), parse_question(message))
    return f"{found[0]} [{found[1]}]" if found else NO_ANSWER


def _follow_up(lines: list[str]) -> str:
    labelled = [
        ln.split(":", 1)[1].strip() for ln in lines if re.match(r"(?i)(follow-up|question):", ln)
    ]
    return labelled[-1] if labelled else (lines[-1] if lines else "")


def standalone_question(message: str, earlier: Sequence[tuple[str, str]]) -> str:
    """The rewrite documented in the module docstring."""
    body = message.lstrip()[len(REWRITE_PREFIX) :]
    first_line, _, rest = body.partition("\n")
    rest_lines = [ln.strip() for ln in rest.splitlines() if ln.strip()]
    follow_up = first_line.strip() or _follow_up(rest_lines)
    user_lines = [ln[5:].strip() for ln in rest_lines if ln.startswith("User:")]
    user_lines = [ln for ln in user_lines if ln != follow_up]
    earlier_users = [text for role, text in earlier if role == "user"]
    previous = user_lines[-1] if user_lines else (earlier_users[-1] if earlier_users else "")
    have = content_words(follow_up)
    added: list[str] = []
    for word in WORD_RE.findall(previous):
        if _is_content_word(word) and _stem(word.lower()) not in have:
            have.add(_stem(word.lower()))
            added.append(word)
    if not added:
        return follow_up
    return f"{follow_up.rstrip(' ?')} ({' '.join(added)})?"


def _number_in_range(schema: Mapping[str, Any], integer: bool) -> float:
    value: float = 3
    if "minimum" in schema:
        value = max(value, schema["minimum"])
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    return math.ceil(value) if integer else float(value)


def fill_schema(schema: Any, text: str, root: Mapping[str, Any] | None = None) -> Any:
    """A deterministic instance of a JSON schema whose strings are `text`."""
    if not isinstance(schema, Mapping):
        return text
    root = root if root is not None else schema
    if isinstance(schema.get("$ref"), str):
        name = schema["$ref"].rsplit("/", 1)[-1]
        return fill_schema(root.get("$defs", {}).get(name, {}), text, root)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return fill_schema(schema[combinator][0], text, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        numbers = [v for v in schema["enum"] if isinstance(v, int | float)]
        if len(numbers) == len(schema["enum"]):  # a score scale: the value nearest 3
            return min(numbers, key=lambda v: abs(v - 3))
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        names = schema.get("required") or list(properties)
        return {name: fill_schema(properties.get(name, {}), text, root) for name in names}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [fill_schema(schema.get("items", {}), text, root) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number_in_range(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def structured_answer(message: str, fmt: Any) -> str:
    passages = parse_passages(message)
    question = parse_question(message)
    found = best_sentence(passages, question)
    passage_sentences = [s for p in passages for s in sentences(p.text)]
    text = found[0] if found else next(iter(passage_sentences), question)
    value = {"answer": text} if fmt == "json" else fill_schema(fmt, text)
    return json.dumps(value)


def broken_answer(message: str) -> str:
    return 'Sure! Here is the JSON you asked for:\n{"answer": "' + parse_question(message)[:40]


def model_reply(model: FakeModel, view: PromptView, fmt: Any) -> str:
    if not view.seen:
        return NO_ANSWER
    last = view.seen[-1][1]
    if model.broken:
        return broken_answer(last)
    if last.lstrip().startswith(REWRITE_PREFIX):
        return standalone_question(last, view.seen[:-1])
    if fmt:
        return structured_answer(last, fmt)
    return extractive_answer(last)


# -- the HTTP server ---------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    # For /api/chat: num_ctx, num_keep, total_tokens, prompt_eval_count, kept_messages, answer.
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        return dict((self.body or {}).get("options") or {})


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    stream: Iterator[dict[str, Any]] | None = None
    text: str | None = None


@dataclass(frozen=True)
class _Turn:
    model: str
    pieces: list[str]
    prompt_tokens: int
    done_reason: str

    def chunk(self, piece: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": piece},
            "done": False,
        }

    def final(self, started: float) -> dict[str, Any]:
        prompt_ns = self.prompt_tokens * PROMPT_NS_PER_TOKEN
        eval_ns = len(self.pieces) * EVAL_NS_PER_TOKEN
        elapsed_ns = int((time.monotonic() - started) * 1e9)
        return {
            **self.chunk(""),
            "done_reason": self.done_reason,
            "done": True,
            "total_duration": max(elapsed_ns, LOAD_NS + prompt_ns + eval_ns),
            "load_duration": LOAD_NS,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": len(self.pieces),
            "eval_duration": eval_ns,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def canonical_name(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _not_found(name: str) -> Reply:
    return Reply(404, {"error": f'model "{name}" not found, try pulling it first'})


def unused_loopback_url() -> str:
    """An http URL on loopback where nothing listens (a port just freed by the OS)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeOllama:
    """A fake Ollama on loopback; see the module docstring for its behaviour."""

    def __init__(
        self,
        models: Sequence[FakeModel] = DEFAULT_MODELS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_delay_s: float = 0.0,
        first_token_delay_s: float = 0.0,
        fail_after_tokens: int | None = None,
        stream_error: str = DEFAULT_STREAM_ERROR,
        report_uncached_only: bool = False,
    ) -> None:
        self.models = {m.name: m for m in models}
        self.report_uncached_only = report_uncached_only
        self._previous_prompt: dict[str, list[Any]] = {}
        self.host = host
        self.port = port
        self.token_delay_s = token_delay_s
        self.first_token_delay_s = first_token_delay_s
        self.fail_after_tokens = fail_after_tokens
        self.stream_error = stream_error
        self._installed = {m.name for m in models if m.installed}
        self._loaded: dict[str, tuple[int, datetime]] = {}
        self._log: list[LoggedRequest] = []
        self.clients_gone = 0  # replies the client closed before they were whole (a Stop)
        self.gone_at: list[float] = []  # when each was noticed (time.monotonic())
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeOllama:
        """Listen (again on the same port after a stop) and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name=f"fake-ollama-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; streams in flight end at their next token without a final chunk."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the request log --

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def is_installed(self, name: str) -> bool:
        with self._lock:
            return canonical_name(name) in self._installed

    def _record(self, method: str, path: str, body: dict[str, Any] | None) -> LoggedRequest:
        entry = LoggedRequest(method, path, body)
        with self._lock:
            self._log.append(entry)
        return entry

    def _installed_model(self, name: str) -> FakeModel | None:
        canonical = canonical_name(name)
        with self._lock:
            return self.models.get(canonical) if canonical in self._installed else None

    def _pause(self, seconds: float, client_gone: Callable[[], bool] | None = None) -> bool:
        """Sleep unless the server stops (or `client_gone()` turns true) meanwhile; False when
        it did."""
        if client_gone is None:
            return seconds <= 0 or not self._stopping.wait(seconds)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, CLIENT_POLL_S)) or client_gone():
                return False
        return True

    def _note_client_gone(self) -> None:
        with self._lock:
            self.clients_gone += 1
            self.gone_at.append(time.monotonic())

    # -- endpoints --

    def handle(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        client_gone: Callable[[], bool] | None = None,
    ) -> Reply:
        """The reply to one request; `client_gone()` says whether the client has closed the
        connection (a stream stops waiting for its first token then)."""
        entry = self._record(method, path, body)
        routes = {
            ("GET", "/"): lambda: Reply(text="Ollama is running"),
            ("GET", "/api/version"): lambda: Reply(body={"version": FAKE_VERSION}),
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): lambda: self._show(body or {}),
            ("POST", "/api/chat"): lambda: self._chat(body or {}, entry, client_gone),
            ("POST", "/api/pull"): lambda: self._pull(body or {}),
        }
        route = routes.get((method, path))
        return route() if route else Reply(404, text="404 page not found")

    def _listing(self, model: FakeModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": MODIFIED_AT,
            "size": model.size_bytes,
            "digest": model.digest,
            "details": model.details(),
        }

    def _tags(self) -> Reply:
        with self._lock:
            names = sorted(self._installed)
        return Reply(body={"models": [self._listing(self.models[n]) for n in names]})

    def _ps(self) -> Reply:
        now = datetime.now(UTC)
        with self._lock:
            loaded = {n: v for n, v in self._loaded.items() if v[1] > now}
        rows = [
            {
                **self._listing(self.models[name]),
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "size_vram": self.models[name].size_bytes,
                "context_length": num_ctx,
            }
            for name, (num_ctx, expires) in sorted(loaded.items())
        ]
        return Reply(body={"models": rows})

    def _show(self, body: dict[str, Any]) -> Reply:
        name = str(body.get("model") or body.get("name") or "")
        model = self._installed_model(name)
        if model is None:
            return _not_found(name)
        return Reply(
            body={
                "license": "Fake model for tests; no rights granted or needed.",
                "modelfile": f"# Modelfile of a fake model\nFROM {model.name}\n",
                "parameters": 'stop                           "<|end|>"',
                "template": "{{ .Prompt }}",
                "details": model.details(),
                "model_info": model.model_info(),
                "capabilities": ["completion"],
                "modified_at": MODIFIED_AT,
            }
        )

    def _pull(self, body: dict[str, Any]) -> Reply:
        name = canonical_name(str(body.get("model") or body.get("name") or ""))
        model = self.models.get(name)
        streamed = body.get("stream", True)
        if model is None:
            error = "pull model manifest: file does not exist"
            if not streamed:
                return Reply(500, {"error": error})
            return Reply(stream=iter([{"status": "pulling manifest"}, {"error": error}]))
        if not streamed:
            self._install(name)
            return Reply(body={"status": "success"})
        return Reply(stream=self._pull_progress(model))

    def _pull_progress(self, model: FakeModel) -> Iterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        digest = f"sha256:{model.digest}"
        for completed in (0, model.size_bytes // 2, model.size_bytes):
            yield {
                "status": f"pulling {model.digest[:12]}",
                "digest": digest,
                "total": model.size_bytes,
                "completed": completed,
            }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self._install(model.name)
        yield {"status": "success"}

    def _install(self, name: str) -> None:
        with self._lock:
            self._installed.add(name)

    def _num_ctx(self, model: FakeModel, options: Mapping[str, Any]) -> int:
        requested = options.get("num_ctx") or DEFAULT_NUM_CTX
        # Ollama lowers a num_ctx above the trained context to the trained context.
        return max(1, min(int(requested), model.context_length))

    def _chat(
        self,
        body: dict[str, Any],
        entry: LoggedRequest,
        client_gone: Callable[[], bool] | None = None,
    ) -> Reply:
        name = str(body.get("model") or "")
        if not name:
            return Reply(400, {"error": "model is required"})
        model = self._installed_model(name)
        if model is None:
            return _not_found(name)
        options = body.get("options") or {}
        num_ctx = self._num_ctx(model, options)
        num_keep = options.get("num_keep")
        num_keep = DEFAULT_NUM_KEEP if num_keep is None or num_keep < 0 else int(num_keep)
        messages = body.get("messages") or []
        view = fit_prompt(messages, num_ctx, num_keep)
        reported = view.kept_tokens - self._cached_tokens(model.name, messages, view)
        text = model_reply(model, view, body.get("format"))
        pieces = ANSWER_PIECE_RE.findall(text)
        limit = options.get("num_predict")
        capped = limit is not None and limit >= 0 and len(pieces) > limit
        pieces = pieces[: int(limit)] if capped else pieces
        entry.outcome.update(
            num_ctx=num_ctx,
            num_keep=num_keep,
            total_tokens=view.total_tokens,
            prompt_eval_count=view.kept_tokens,
            kept_messages=view.kept_messages,
            answer="".join(pieces),
        )
        with self._lock:
            self._loaded[model.name] = (num_ctx, datetime.now(UTC) + KEEP_ALIVE)
        turn = _Turn(model.name, pieces, reported, "length" if capped else "stop")
        if body.get("stream", True):
            return Reply(stream=self._stream_chat(turn, client_gone))
        return self._whole_chat(turn)

    def _cached_tokens(self, model: str, messages: list[Any], view: PromptView) -> int:
        """With `report_uncached_only`, the prompt tokens a prompt cache would have kept from
        this model's previous request (its leading messages in common, whole), which servers
        that count only evaluated tokens leave out of `prompt_eval_count`; otherwise 0."""
        with self._lock:
            previous = self._previous_prompt.get(model, [])
            self._previous_prompt[model] = list(messages)
        if not self.report_uncached_only or view.kept_tokens < view.total_tokens:
            return 0
        common = 0
        for before, now in zip(previous, messages, strict=False):
            if before != now:
                break
            common += 1
        cached = PROMPT_LEADING_TOKENS + sum(message_token_count(m) for m in messages[:common])
        return min(cached, view.kept_tokens - 1)

    def _stream_chat(
        self, turn: _Turn, client_gone: Callable[[], bool] | None = None
    ) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        if not self._pause(self.first_token_delay_s, client_gone):
            return
        fail_after = self.fail_after_tokens
        for count, piece in enumerate(turn.pieces):
            if fail_after is not None and count >= fail_after:
                yield {"error": self.stream_error}
                return
            if count and not self._pause(self.token_delay_s):
                return
            yield turn.chunk(piece)
        if fail_after is not None:
            yield {"error": self.stream_error}
            return
        yield turn.final(started)

    def _whole_chat(self, turn: _Turn) -> Reply:
        started = time.monotonic()
        generation = self.token_delay_s * max(len(turn.pieces) - 1, 0)
        if not self._pause(self.first_token_delay_s + generation):
            return Reply(500, {"error": "server shutting down"})
        if self.fail_after_tokens is not None:
            return Reply(500, {"error": self.stream_error})
        final = turn.final(started)
        final["message"]["content"] = "".join(turn.pieces)
        return Reply(body=final)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeOllama
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each streamed chunk leaves at once
    server: _Server
    gone = False  # set per request by `_serve`

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeOllama.requests` instead."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        self.gone = False  # the client closed the connection before the reply was whole
        self.close_connection = True  # one request per connection: a stopped fake stays silent
        try:
            body = self._read_body() if method == "POST" else None
        except ValueError as err:
            self._send_json(400, {"error": f"invalid request body: {err}"})
            return
        try:
            path = self.path.split("?", 1)[0]
            reply = self.server.fake.handle(method, path, body, self._client_gone)
        except Exception as err:  # a bug in the fake: answer like a failing Ollama would
            reply = Reply(500, {"error": f"fake server failure: {err!r}"})
        try:
            if reply.stream is not None:
                self._send_stream(reply.stream)
            elif reply.text is not None:
                self._send_bytes(reply.status, reply.text.encode(), "text/plain; charset=utf-8")
            else:
                self._send_json(reply.status, reply.body)
        except (BrokenPipeError, ConnectionResetError):  # a Stop, a test's timeout
            if not self.gone:
                self.server.fake._note_client_gone()

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (the whole request was read, so anything
        readable now is its end of stream)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            gone = bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            gone = True
        if gone and not self.gone:
            self.gone = True
            self.server.fake._note_client_gone()
        return gone

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        parsed = json.loads(raw or b"{}")
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return parsed

    def _send_json(self, status: int, body: Any) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, lines: Iterator[dict[str, Any]]) -> None:
        first = next(lines, None)  # the wait for the first token; nothing is sent before it
        if first is None and self.gone:
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for line in itertools.chain([first] if first is not None else [], lines):
            data = json.dumps(line).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval.fake_ollama", description="A fake Ollama server for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--fail-after-tokens", type=int, default=None, help="send an error after N chunks"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    server = FakeOllama(
        host=args.host,
        port=args.port,
        token_delay_s=args.token_delay,
        first_token_delay_s=args.first_token_delay,
        fail_after_tokens=args.fail_after_tokens,
    ).start()
    print(f"Fake Ollama listening on {server.url} (models: {', '.join(server.models)}).")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
