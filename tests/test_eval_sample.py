"""The shipped sample eval set is consistent, and the eval-set loader rejects malformed sets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from eval.dataset import EvalSet, EvalSetError, QAItem, load_eval_set
from eval.metrics import is_gold_passage, retrieval_hit
from rag.errors import KBError

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "eval" / "sample"
SQUAD_DIR = Path("/work/shared/datasets/squad-dev")
BINARY_SIZE_LIMIT = 50_000


def collapse(text: str) -> str:
    return " ".join(text.split())


def extract_text(path: Path) -> str:
    """The document's text as a reader sees it, white space collapsed."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        return collapse(" ".join(page.extract_text() or "" for page in PdfReader(path).pages))
    if suffix == ".docx":
        import docx

        return collapse(" ".join(p.text for p in docx.Document(str(path)).paragraphs))
    if suffix in {".html", ".htm"}:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        return collapse(soup.get_text(" "))
    return collapse(path.read_text(encoding="utf-8"))


def load_generator_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_binary_docs", SAMPLE_DIR / "make_binary_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample() -> EvalSet:
    return load_eval_set(SAMPLE_DIR)


# -- the sample set ---------------------------------------------------------------------------


def test_sample_has_20_to_40_questions_some_unanswerable(sample: EvalSet) -> None:
    assert 20 <= len(sample.items) <= 40
    assert len(sample.unanswerable) >= 3
    assert len(sample.answerable) >= 3 * len(sample.unanswerable)


def test_sample_ships_one_document_of_each_format(sample: EvalSet) -> None:
    suffixes = sorted(p.suffix for p in sample.docs_dir.iterdir() if p.is_file())
    assert suffixes == [".csv", ".docx", ".html", ".md", ".pdf", ".txt"]


def test_every_sample_document_is_asked_about(sample: EvalSet) -> None:
    asked = {item.doc for item in sample.answerable}
    assert asked == {p.name for p in sample.docs_dir.iterdir() if p.is_file()}


def test_sample_documents_are_a_few_hundred_to_1500_words(sample: EvalSet) -> None:
    for path in sample.docs_dir.iterdir():
        words = len(extract_text(path).split())
        assert 250 <= words <= 1600, f"{path.name} has {words} words"


def test_binary_documents_are_small_and_the_pdf_has_two_pages(sample: EvalSet) -> None:
    from pypdf import PdfReader

    pdf, docx_file = (
        sample.docs_dir / "research-data-policy.pdf",
        sample.docs_dir / "boating-procedures.docx",
    )
    assert pdf.stat().st_size < BINARY_SIZE_LIMIT
    assert docx_file.stat().st_size < BINARY_SIZE_LIMIT
    assert len(PdfReader(pdf).pages) >= 2


def test_committed_binary_documents_match_their_script(sample: EvalSet, tmp_path: Path) -> None:
    script = load_generator_script()
    script.write_boating_docx(tmp_path / script.DOCX_NAME)
    script.write_data_policy_pdf(tmp_path / script.PDF_NAME)
    for name in (script.DOCX_NAME, script.PDF_NAME):
        assert extract_text(tmp_path / name) == extract_text(sample.docs_dir / name), name


def test_every_answer_occurs_verbatim_in_its_evidence(sample: EvalSet) -> None:
    for item in sample.answerable:
        assert item.evidence is not None, item.id
        for answer in item.answers:
            assert answer in item.evidence, f"{item.id}: {answer!r}"


def test_every_evidence_occurs_in_its_document(sample: EvalSet) -> None:
    for item in sample.answerable:
        path = sample.doc_path(item)
        assert path is not None and item.evidence is not None
        assert collapse(item.evidence) in extract_text(path), item.id
        if path.suffix in {".md", ".txt", ".csv", ".html"}:
            assert item.evidence in path.read_text(encoding="utf-8"), item.id


def test_pdf_and_docx_evidence_is_a_single_sentence(sample: EvalSet) -> None:
    for item in sample.answerable:
        if item.doc and item.doc.endswith((".pdf", ".docx")):
            assert item.evidence is not None
            assert item.evidence.count(". ") == 0 and item.evidence.endswith("."), item.id


def test_each_gold_document_counts_as_a_retrieval_hit(sample: EvalSet) -> None:
    for item in sample.answerable:
        path = sample.doc_path(item)
        assert path is not None and item.evidence is not None
        assert is_gold_passage(item.evidence, item), item.id
        assert retrieval_hit(["An unrelated passage.", extract_text(path)], item), item.id


def test_unanswerable_questions_have_no_gold(sample: EvalSet) -> None:
    for item in sample.unanswerable:
        assert item.answers == () and item.doc is None and item.evidence is None
        assert retrieval_hit([extract_text(p) for p in sample.docs_dir.iterdir()], item) is None


# -- the loader -------------------------------------------------------------------------------


def write_set(root: Path, lines: list[str], docs: tuple[str, ...] = ("a.md",)) -> Path:
    (root / "docs").mkdir(parents=True)
    for name in docs:
        (root / "docs" / name).write_text("# A\n\nThe answer is 42.\n", encoding="utf-8")
    (root / "qa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def qa_line(**fields: object) -> str:
    record: dict[str, object] = {
        "id": "q1",
        "question": "What is the answer?",
        "answers": ["42"],
        "doc": "a.md",
        "evidence": "The answer is 42.",
    }
    record.update(fields)
    return json.dumps(record)


def test_loader_reads_items_and_ignores_extra_keys(tmp_path: Path) -> None:
    root = write_set(
        tmp_path / "set",
        [
            qa_line(title="A", para_index=0),
            "",
            qa_line(id="q2", answers=[], doc=None, evidence=None, unanswerable=True),
        ],
    )
    loaded = load_eval_set(root / "qa.jsonl")
    assert loaded.docs_dir == root / "docs"
    assert loaded.items == (
        QAItem("q1", "What is the answer?", ("42",), "a.md", "The answer is 42."),
        QAItem("q2", "What is the answer?", (), None, None, unanswerable=True),
    )
    assert loaded.doc_path(loaded.items[0]) == root / "docs" / "a.md"


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        (qa_line(question=""), "'question' must be a non-empty string"),
        (qa_line(answers="42"), "'answers' must be a list"),
        (qa_line(answers=[]), "at least one answer"),
        (qa_line(doc=None), "'doc' must name the gold document"),
        (qa_line(doc="missing.md"), "not a file"),
        (qa_line(doc="../a.md"), "must be a path inside docs/"),
        (qa_line(unanswerable="yes"), "'unanswerable' must be true or false"),
        (qa_line(unanswerable=True), "cannot have 'evidence'"),
        (qa_line(id="q0"), "repeats the id of line 1"),
    ],
)
def test_loader_names_file_and_line_of_a_bad_line(
    tmp_path: Path, bad_line: str, expected: str
) -> None:
    good = qa_line(id="q0")
    root = write_set(tmp_path / "set", [good, bad_line])
    with pytest.raises(EvalSetError) as caught:
        load_eval_set(root)
    message = str(caught.value)
    assert message.startswith(f"Line 2 of {root / 'qa.jsonl'} is invalid: ")
    assert expected in message
    assert message.endswith(".") and "\n" not in message
    assert isinstance(caught.value, KBError)


def test_loader_rejects_missing_parts(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="does not exist"):
        load_eval_set(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalSetError, match="no docs/ folder"):
        load_eval_set(tmp_path / "empty")
    (tmp_path / "empty" / "docs").mkdir()
    with pytest.raises(EvalSetError, match=r"no qa\.jsonl file"):
        load_eval_set(tmp_path / "empty")
    (tmp_path / "empty" / "qa.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match="has no questions"):
        load_eval_set(tmp_path / "empty")


@pytest.mark.skipif(not SQUAD_DIR.is_dir(), reason="the shared SQuAD set is not on this machine")
def test_loader_reads_the_squad_layout() -> None:
    squad = load_eval_set(SQUAD_DIR)
    assert len(squad.items) == 2067
    assert not squad.unanswerable
    assert all(item.evidence for item in squad.items[:50])
