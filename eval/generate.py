"""A model writes an eval set from the user's own documents.

`generate_eval_set(services, docs, model, n, out)` ingests `docs` (cheap when unchanged),
samples chunks from the store spread across its documents (documents in a seeded random order,
taken in turns, a seeded random chunk of each per turn), and asks the model (an id
`name@server` or a bare name, on any configured server) for one question and a short answer per
chunk, with structured output (`ModelHub.structured` with a JSON schema of
`{question, answer}`). A pair is kept only when the answer occurs in the chunk (as whole words
after SQuAD normalisation, `eval.metrics.contains_reference`) and the question is new; a
malformed reply is asked for once more. The chunk's text is kept as the gold `evidence`, its
document as the gold `doc`.

The output folder is an eval set (`eval/README.md`): `qa.jsonl`, `docs` (a symbolic link to the
documents folder, so the set is read where the documents live and an ingest of the set finds
them already ingested), and `generated.json` (model id, seed, documents folder, counts).

Why kb's own model seam and not llama-index: `DatasetGenerator` writes questions only, from free
text split into lines, and would answer them with a query engine rather than keep a reference
span; `generate_qa_embedding_pairs` writes queries for embedding fine-tuning, no answers. Both
call the model through llama-index's LLM wrappers (one more package per server kind), which
know neither kb's servers nor the model's real window. `ModelHub.structured` gives structured
output validated against a JSON schema on every server kb talks to, the window kb computes for
the model (`effective_window`, sent to Ollama as `num_ctx`), the servers and one-sentence
errors of the rest of `kb`, and the chunk stays at hand for the check that the answer is in it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from eval.corpus import IngestHook, ingest_docs, open_eval_store
from eval.dataset import DOCS_DIR, QA_FILE, load_eval_set
from eval.metrics import contains_reference, normalize_answer
from eval.servers import ServedModel, find_model, not_found
from rag.errors import KBError, MalformedReplyError, ModelNotFoundError
from rag.llm.hub import ModelHub
from rag.service import Services
from rag.store import DocRecord, Store

INFO_FILE = "generated.json"
MIN_CHUNK_CHARS = 200  # shorter chunks (titles, table rows) rarely carry a question
MAX_ANSWER_WORDS = 40
CANDIDATES_PER_QUESTION = 3  # chunks sampled per wanted question, for pairs that are dropped
ATTEMPTS = 2
GENERATE_TOKENS = 256
ProgressHook = Callable[[int, int], None]  # (questions kept, questions wanted)

QA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}

INSTRUCTIONS = """You write exam questions about documents. You get one numbered passage.
Write one question that the passage answers, and its answer.
- The answer is a short span copied word for word from the passage: a name, a number, a date, \
or a few words. No full sentences.
- The question must make sense without the passage: name what it is about, never say "the \
passage" or "the text".
Reply with a JSON object: {"question": "...", "answer": "..."}."""


@dataclass(frozen=True)
class SampledChunk:
    doc: str  # relative to the documents folder
    chunk_index: int
    text: str


@dataclass
class GenerationOutcome:
    out: Path
    wanted: int
    items: list[dict[str, Any]] = field(default_factory=list)
    tried: int = 0
    documents: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def describe(self) -> str:
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.dropped.items())
        detail = f"; {dropped} dropped ({reasons})" if dropped else ""
        return (
            f"Wrote {len(self.items)} of {self.wanted} questions to {self.out / QA_FILE} from "
            f"{self.tried} chunks of {self.documents} documents{detail}."
        )


def generate_eval_set(
    services: Services,
    docs: Path,
    model: str,
    n: int,
    out: Path,
    *,
    seed: int = 0,
    on_progress: ProgressHook | None = None,
    on_ingest: IngestHook | None = None,
) -> GenerationOutcome:
    """Write an eval set of up to `n` questions about `docs` into the new folder `out`.

    `model` is a model id or bare name; the set records the id it resolved to. Raises `KBError`
    (one sentence) when a folder is unusable, no server has the model, or no pair was usable."""
    docs = _check_folders(docs, out)
    served = _served(services, model)
    with open_eval_store(services) as store:
        ingest_docs(services.settings, store, services.embedder, docs, on_ingest)
        records = documents_under(store, docs)
        candidates = sample_chunks(store, records, docs, n * CANDIDATES_PER_QUESTION, seed)
        outcome = GenerationOutcome(out, n, documents=len(records))
        writer = _PairWriter(services.models, served, seed)
        for chunk in candidates:
            if len(outcome.items) >= n:
                break
            writer.add(chunk, outcome)
            if on_progress is not None:
                on_progress(len(outcome.items), n)
    if not outcome.items:
        raise KBError(f"The model {served.id} wrote no usable question for {outcome.tried} "
                      "chunks; try a larger model.")  # fmt: skip
    write_eval_set(outcome, docs, served.id, seed)
    return outcome


def _check_folders(docs: Path, out: Path) -> Path:
    if not docs.is_dir():
        raise KBError(f"The documents folder {docs} does not exist.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KBError(f"The output folder {out} is not empty; give a new folder.")
    return docs.resolve()


def _served(services: Services, model: str) -> ServedModel:
    try:
        return find_model(services, model)
    except ModelNotFoundError:
        raise KBError(not_found(services.models, model)) from None


def documents_under(store: Store, folder: Path) -> list[DocRecord]:
    """The registry records of the documents inside `folder` (absolute, resolved)."""
    return [r for r in store.documents() if Path(r.abs_path).is_relative_to(folder)]


def sample_chunks(
    store: Store, records: Sequence[DocRecord], folder: Path, count: int, seed: int
) -> list[SampledChunk]:
    """Up to `count` chunks, spread across documents: documents in a seeded order, taken in
    turns, one seeded random unused chunk of at least MIN_CHUNK_CHARS characters per turn."""
    rng = random.Random(seed)
    order = sorted(records, key=lambda r: r.abs_path)
    rng.shuffle(order)
    pools = {record.doc_id: _chunk_pool(store, record, folder, rng) for record in order}
    picked: list[SampledChunk] = []
    while len(picked) < count and any(pools.values()):
        for record in order:
            pool = pools[record.doc_id]
            if pool and len(picked) < count:
                picked.append(pool.pop())
    return picked


def _chunk_pool(
    store: Store, record: DocRecord, folder: Path, rng: random.Random
) -> list[SampledChunk]:
    doc = Path(record.abs_path).relative_to(folder).as_posix()
    pool = [
        SampledChunk(doc, point.payload["chunk_index"], point.payload["text"])
        for point in store.chunks_of(record.doc_id)
        if len(point.payload["text"].strip()) >= MIN_CHUNK_CHARS
    ]
    rng.shuffle(pool)
    return pool


class _PairWriter:
    """Asks the model about one chunk and keeps the pair when it passes the checks."""

    def __init__(self, models: ModelHub, served: ServedModel, seed: int) -> None:
        self.models = models
        self.served = served
        self.seed = seed
        self.seen: set[str] = set()

    def add(self, chunk: SampledChunk, outcome: GenerationOutcome) -> None:
        outcome.tried += 1
        pair = self.ask(chunk)
        if isinstance(pair, str):
            outcome.drop(pair)
            return
        question, answer = pair
        if not contains_reference(chunk.text, [answer]):
            outcome.drop("answer not in the chunk")
        elif len(answer.split()) > MAX_ANSWER_WORDS:
            outcome.drop("answer too long")
        elif normalize_answer(question) in self.seen:
            outcome.drop("repeated question")
        else:
            self.seen.add(normalize_answer(question))
            item = _item(len(outcome.items) + 1, chunk, question, answer, self.served.id)
            outcome.items.append(item)

    def ask(self, chunk: SampledChunk) -> tuple[str, str] | str:
        """(question, answer), or the reason there is none: a malformed reply twice, or a
        server error on the last attempt."""
        messages = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"<passages>\n[1] {chunk.doc}\n{chunk.text}\n</passages>"},
        ]
        reason = "malformed reply"
        for _ in range(ATTEMPTS):
            try:
                reply = self.models.structured(
                    self.served.id, messages, QA_SCHEMA, window=self.served.window,
                    max_tokens=GENERATE_TOKENS, seed=self.seed,
                )  # fmt: skip
            except MalformedReplyError:
                reason = "malformed reply"
                continue
            except KBError:
                reason = "model server error"
                continue
            pair = pair_from(reply)
            if pair is not None:
                return pair
            reason = "malformed reply"
        return reason


def parse_pair(text: str) -> tuple[str, str] | None:
    """(question, answer) from the model's JSON text, or None when it does not hold both."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return pair_from(data)


def pair_from(data: Any) -> tuple[str, str] | None:
    """(question, answer) from the model's parsed JSON, white space collapsed, or None when it
    does not hold both as non-empty strings."""
    if not isinstance(data, dict):
        return None
    question, answer = data.get("question"), data.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        return None
    question, answer = " ".join(question.split()), " ".join(answer.split())
    return (question, answer) if question and answer else None


def _item(
    number: int, chunk: SampledChunk, question: str, answer: str, model: str
) -> dict[str, Any]:
    return {
        "id": f"gen-{number:03d}",
        "question": question,
        "answers": [answer],
        "doc": chunk.doc,
        "evidence": chunk.text,
        "chunk_index": chunk.chunk_index,
        "generated_by": model,
    }


def write_eval_set(outcome: GenerationOutcome, docs: Path, model: str, seed: int) -> None:
    out = outcome.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.symlink(docs, out / DOCS_DIR, target_is_directory=True)
        lines = (json.dumps(item, ensure_ascii=False) + "\n" for item in outcome.items)
        (out / QA_FILE).write_text("".join(lines), encoding="utf-8")
        (out / INFO_FILE).write_text(json.dumps(_info(outcome, docs, model, seed), indent=2)
                                     + "\n", encoding="utf-8")  # fmt: skip
    except OSError as err:
        raise KBError(f"Could not write the eval set into {out} ({err.strerror or err}).") from None
    load_eval_set(out)  # what we wrote must load; a failure here is a bug, not a user error


def _info(outcome: GenerationOutcome, docs: Path, model: str, seed: int) -> dict[str, Any]:
    return {
        "docs": str(docs),
        "model": model,
        "seed": seed,
        "wanted": outcome.wanted,
        "written": len(outcome.items),
        "chunks_tried": outcome.tried,
        "documents": outcome.documents,
        "dropped": outcome.dropped,
        "created_at": datetime.now().isoformat(timespec="seconds"),
    }
