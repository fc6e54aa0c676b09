"""Chinese keyword search: BM25 tokenizes Chinese into words (Qdrant's multilingual tokenizer),
the store records the tokenizer and queries use the recorded one; stores that record none
keep the word tokenizer they were built with."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import sentence_spans
from ingest.pipeline import ingest
from ingest.writer import ensure_collections
from rag.embeddings import Embedder
from rag.retrieve import Retriever
from rag.sparse import Bm25Encoder
from rag.store import open_store
from tests.ingest_fixtures import make_settings

# (file, note) of the notes that answer QUESTIONS; each shares words with distractors below
ANSWERS = {
    "reimburse": "報銷單必須在三十天內交給財務部，逾期不予受理。",
    "boiler": "鍋爐房的鑰匙由保安隊長王明保管，晚上十點後不可借出。",
    "library": "圖書館週六開放到下午五點，週日全天閉館。",
    "canteen": "員工餐廳的素食窗口在二樓東側，每天中午供應豆腐飯。",
    "parking": "訪客停車證在前台領取，每張停車證限用一天。",
}
QUESTIONS = {
    "reimburse": "報銷單要在幾天內交？",
    "boiler": "誰保管鍋爐房的鑰匙？",
    "library": "圖書館週六開到幾點？",
    "canteen": "素食窗口在哪裡？",
    "parking": "訪客停車證在哪裡領取？",
}
PLACES = ["財務部", "前台", "二樓", "保安隊", "圖書館", "餐廳", "會議室", "倉庫", "實驗室", "宿舍"]
THINGS = ["鑰匙", "表格", "打印機", "投影儀", "雨傘", "急救箱", "滅火器", "咖啡機", "白板", "電腦"]
DAYS = ["週一", "週二", "週三", "週四", "週五"]


def distractors(count: int) -> dict[str, str]:
    """Notes about the same places, things and days, answering none of the questions."""
    notes = {}
    for i in range(count):
        place, thing, day = PLACES[i % 10], THINGS[(i * 3) % 10], DAYS[i % 5]
        notes[f"note{i:02d}"] = f"{place}的{thing}每逢{day}檢查一次，有問題請聯繫{place}負責人。"
    return notes


def build_corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, text in {**ANSWERS, **distractors(25)}.items():
        (root / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    return root


def keyword_ranks(settings_dir: Path, embedder: Embedder) -> dict[str, int | None]:
    """Rank (1-based) of each question's note among BM25-only results; None: not found."""
    ranks: dict[str, int | None] = {}
    with open_store(make_settings(settings_dir)) as store:
        encoder = Bm25Encoder.recorded(store.metadata().get("bm25"))
        for key, question in QUESTIONS.items():
            found = store.search_one(None, encoder.query(question), 10)
            names = [Path(s.chunk.path).stem for s in found]
            ranks[key] = names.index(key) + 1 if key in names else None
    return ranks


def test_chinese_notes_are_found_by_keyword_search(tmp_path: Path, embedder: Embedder) -> None:
    root = build_corpus(tmp_path / "notes")
    settings = make_settings(tmp_path / "store")
    report = ingest(settings, [root], embedder=embedder)
    assert report.added == 30 and not report.failed
    with open_store(settings) as store:
        assert store.metadata()["bm25"]["tokenizer"] == "multilingual"
    ranks = keyword_ranks(tmp_path / "store", embedder)
    assert ranks == dict.fromkeys(QUESTIONS, 1), ranks
    # the hybrid search the app runs finds them too, though the default embedder is English-only
    with open_store(settings) as store:
        retriever = Retriever(store, embedder)
        for key, question in QUESTIONS.items():
            top = [Path(p.path).stem for p in retriever.search(question)[:3]]
            assert key in top, (question, top)


def test_a_store_without_a_recorded_tokenizer_keeps_the_word_tokenizer(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A store built before tokenizers were recorded: new chunks and queries use its word
    tokenizer, under which a Chinese clause is one token and the questions miss."""
    root = build_corpus(tmp_path / "notes")
    settings = make_settings(tmp_path / "store")
    with open_store(settings) as store:
        ensure_collections(store, settings.embed_model, embedder.dim, None, {"language": "english"})
    ingest(settings, [root], embedder=embedder)
    with open_store(settings) as store:
        assert store.metadata()["bm25"] == {"language": "english"}
    ranks = keyword_ranks(tmp_path / "store", embedder)
    assert sum(rank == 1 for rank in ranks.values()) <= 1, ranks


def test_english_words_keep_their_ids_under_the_multilingual_tokenizer() -> None:
    text = "The boiler room key is kept by the night guard."
    assert Bm25Encoder(tokenizer="word").document(text) == Bm25Encoder().document(text)
    chinese = "報銷單必須在三十天內交給財務部"
    assert len(Bm25Encoder(tokenizer="word").document(chinese).indices) == 1
    assert len(Bm25Encoder().document(chinese).indices) > 4


def test_recorded_settings_pick_the_encoder() -> None:
    assert Bm25Encoder.recorded({}).tokenizer == "word"
    recorded = Bm25Encoder(avg_len=32.0).describe()
    again = Bm25Encoder.recorded(recorded)
    assert (again.tokenizer, again.avg_len) == ("multilingual", 32.0)
    with pytest.raises(ValueError, match="tokenizer"):
        Bm25Encoder(tokenizer="klingon").document("x")


def test_chinese_full_stops_end_sentences() -> None:
    text = "報銷單必須在三十天內提交。會議在週三舉行！你來嗎？」 Then English. Second one."
    sentences = [text[a:b] for a, b in sentence_spans(text)]
    assert sentences == [
        "報銷單必須在三十天內提交。",
        "會議在週三舉行！",
        "你來嗎？」",
        "Then English.",
        "Second one.",
    ]
