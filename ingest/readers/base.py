"""What every reader returns (`ParsedDocument` of `Section`s) and the helpers readers share."""

from __future__ import annotations

from dataclasses import dataclass, field


class UnreadableFile(Exception):
    """A file that cannot be ingested; `str()` is the one-line reason."""


@dataclass
class Section:
    text: str
    headings: list[str] = field(default_factory=list)
    page: int | None = None


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]


class SectionBuilder:
    """Collects lines under a heading stack; the first level-1 heading becomes the title."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.stack: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str, can_be_title: bool = True) -> None:
        self.flush()
        text = clean_line(text)
        if can_be_title and level == 1 and self.title is None and not self.sections:
            self.title = text
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))

    def add(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        text = "\n".join(self.lines).strip()
        if text:
            self.sections.append(Section(text, [h for _, h in self.stack]))
        self.lines = []

    def build(self, default_title: str) -> ParsedDocument:
        self.flush()
        return ParsedDocument(self.title or default_title, self.sections)


def short_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def clean_line(text: str) -> str:
    return " ".join(text.split())
