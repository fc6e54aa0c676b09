"""Saved chat conversations: one JSON file per conversation under
`<KB_DATA_DIR>/conversations/<owner>/`, written atomically (a temporary file in the same
folder, fsync, rename), so a crash leaves the old file or the new one, never half of one.

`owner` is `shared` without sign-in (no password, or the one shared password: there are no
users to tell apart) and a hash of the OIDC issuer and subject with sign-in, so each user
lists only their own conversations. A file that cannot be read is skipped and counted, never
deleted. No Streamlit here: `ui/conversation_panel.py` is the sidebar over this.

A conversation's turns are the chat page's turn dicts (`role`, `content`, and `result`, an
`AnswerResult`, or `passages`, a list of `Passage`); other keys are kept when they are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rag.chain import AnswerResult
from rag.errors import KBError
from rag.retrieve import Passage

FOLDER = "conversations"
SHARED_OWNER = "shared"
TITLE_CHARS = 60
SCHEMA = 1
_ID = re.compile(r"^[0-9a-f]{32}$")
# Turn values that are objects, and how each is written as JSON and read back.
_TYPED: dict[str, TypeAdapter[Any]] = {
    "result": TypeAdapter(AnswerResult),
    "passages": TypeAdapter(list[Passage]),
}


def owner_key(issuer: str | None, subject: str | None) -> str:
    """The folder name of one signed-in user (issuer and subject identify them for good, an
    e-mail address need not), or `shared` without sign-in."""
    if not subject:
        return SHARED_OWNER
    return hashlib.sha256(f"{issuer or ''}\n{subject}".encode()).hexdigest()[:32]


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(text: str | None) -> bool:
    """Whether `text` can be a conversation id (so an address never names another file)."""
    return bool(text) and _ID.match(text or "") is not None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def title_for(question: str) -> str:
    """A new conversation's title: its first question, on one line, cut at a word."""
    line = " ".join(question.split())
    if len(line) <= TITLE_CHARS:
        return line or "Conversation"
    return line[:TITLE_CHARS].rsplit(" ", 1)[0] + "…"


@dataclass
class Conversation:
    """One conversation: `turns` as the chat page keeps them; times are ISO 8601 in UTC."""

    id: str
    title: str
    created_at: str
    updated_at: str
    turns: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "turns": [_turn_json(turn) for turn in self.turns],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conversation:
        """Raises `ValueError` (or pydantic's `ValidationError`, one) for a malformed file."""
        if not isinstance(data, dict) or not valid_id(data.get("id")):
            raise ValueError("not a conversation")
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise ValueError("no turns")
        return cls(
            id=data["id"],
            title=str(data.get("title") or "Conversation"),
            created_at=str(data.get("created_at") or ""),
            updated_at=str(data.get("updated_at") or ""),
            turns=[_turn_from_json(turn) for turn in turns],
        )


def _turn_json(turn: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in turn.items():
        if key in _TYPED:
            out[key] = _TYPED[key].dump_python(value, mode="json")
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # something of this session only (a live object): not saved
        out[key] = value
    return out


def _turn_from_json(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("role"), str):
        raise ValueError("a turn without a role")
    return {k: _TYPED[k].validate_python(v) if k in _TYPED else v for k, v in data.items()}


@dataclass(frozen=True)
class Summary:
    """What a list of conversations shows of one."""

    id: str
    title: str
    updated_at: str


@dataclass(frozen=True)
class Listing:
    """The conversations of one owner, most recently changed first, and how many files could
    not be read."""

    conversations: list[Summary]
    unreadable: int


class ConversationStore:
    """The saved conversations of one owner. Errors a user can hit raise `KBError` (one
    sentence); nothing already saved is lost by a failed write."""

    def __init__(self, data_dir: Path, owner: str) -> None:
        self.folder = data_dir / FOLDER / owner

    def path(self, conversation_id: str) -> Path:
        if not valid_id(conversation_id):
            raise KBError(f"{conversation_id!r} is not a conversation id.")
        return self.folder / f"{conversation_id}.json"

    def save(self, conversation: Conversation) -> None:
        """Write the conversation atomically (its `updated_at` is set now)."""
        conversation.updated_at = now()
        text = json.dumps(conversation.as_json(), ensure_ascii=False, indent=1)
        target = self.path(conversation.id)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, text)
        except OSError as err:
            raise KBError(
                f"Could not save the conversation in {self.folder} ({err.strerror or err}); "
                "check that the folder is writable."
            ) from None

    def load(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when it is gone or cannot be read."""
        try:
            return _read(self.path(conversation_id))
        except (KBError, OSError, ValueError, ValidationError):
            return None

    def listing(self) -> Listing:
        conversations, unreadable = [], 0
        for path in self.folder.glob("*.json") if self.folder.is_dir() else []:
            try:
                read = _read(path)
            except (OSError, ValueError, ValidationError):
                unreadable += 1
                continue
            conversations.append(Summary(read.id, read.title, read.updated_at))
        conversations.sort(key=lambda c: (c.updated_at, c.id), reverse=True)
        return Listing(conversations, unreadable)

    def rename(self, conversation_id: str, title: str) -> Conversation:
        """Give the conversation a new title (blank titles are refused)."""
        title = " ".join(title.split())
        if not title:
            raise KBError("A conversation's name cannot be empty; type a name.")
        conversation = self.load(conversation_id)
        if conversation is None:
            raise KBError("That conversation is gone; it may have been deleted elsewhere.")
        conversation.title = title
        self.save(conversation)
        return conversation

    def delete(self, conversation_id: str) -> None:
        try:
            self.path(conversation_id).unlink(missing_ok=True)
        except OSError as err:
            raise KBError(
                f"Could not delete the conversation ({err.strerror or err}); check that "
                f"{self.folder} is writable."
            ) from None


def _read(path: Path) -> Conversation:
    return Conversation.from_json(json.loads(path.read_text(encoding="utf-8")))


def _write_atomically(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


# -- export ----------------------------------------------------------------------------------


def as_markdown(conversation: Conversation) -> str:
    """The conversation as a Markdown document: questions, answers with their numbered sources,
    search results. What a model or a document wrote is quoted as it is (a Markdown file is
    not rendered by the app)."""
    lines = [f"# {conversation.title}", "", f"_Saved {conversation.updated_at}_", ""]
    for turn in conversation.turns:
        lines += _turn_markdown(turn)
    return "\n".join(lines).rstrip() + "\n"


def _turn_markdown(turn: dict[str, Any]) -> list[str]:
    role = turn.get("role")
    if role == "user":
        return ["## Question", "", str(turn.get("content", "")), ""]
    if role == "assistant" and isinstance(turn.get("result"), AnswerResult):
        result: AnswerResult = turn["result"]
        lines = [f"## Answer ({result.model})", "", result.answer, ""]
        if result.citations:
            lines += ["Sources:", ""]
            lines += [f"- [{c.n}] {c.source}" for c in result.citations]
            lines.append("")
        return lines
    if role == "stopped":  # an answer the user stopped: what had arrived
        return ["## Answer (stopped)", "", str(turn.get("content", "")), ""]
    if role == "search":
        passages: list[Passage] = turn.get("passages") or []
        lines = ["## Search results", ""]
        for n, passage in enumerate(passages, 1):
            lines += [f"{n}. {passage.path}", "", _quoted(passage.text), ""]
        return lines
    return ["## Error", "", str(turn.get("content", "")), ""]


def _quoted(text: str) -> str:
    return "\n".join(f"   > {line}" for line in text.splitlines())


def export_file_name(conversation: Conversation | Summary) -> str:
    """A file name from the title: letters, digits and dashes, `.md`."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", conversation.title).strip("-")[:50] or "conversation"
    return f"{stem}.md"
