"""A document is data, not page content: a planted markdown image and <img> tag, in a passage
and in the model's (extractive) answer, reach the page only as literal text."""

from __future__ import annotations

import re
from html import unescape

from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from eval.fake_ollama import FakeOllama
from tests.ui_helpers import (
    AUTOLINKABLE,
    IMAGE_MD,
    IMAGE_TAG,
    SIGNALS_Q,
    AppEnv,
    ask,
    elements,
    markdown_bodies,
    new_app,
    no_exception,
    page_text,
    switch,
)
from ui.views.library import HIDE_CEILING


def assert_nothing_remote(app: AppTest) -> None:
    assert not elements(app, "image")
    # the only HTML is kb's own fixed style (the Library hides Streamlit's upload ceiling)
    assert all(e.value == HIDE_CEILING for e in elements(app, "html"))
    renderer = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for body in markdown_bodies(app):
        assert "![" not in body and "<img" not in body
        # what GFM links; not inside a code span (kb's own messages show a server's address so)
        text = _CODE_SPAN.sub("", body.replace("\\`", ""))
        assert not AUTOLINKABLE.search(unescape(text.replace("\\", "")))
        html = renderer.render(body)
        # kb's own: an answer's [n] links to its passage's anchor, and that anchor
        own = _OWN_LINK.sub("", _OWN_ANCHOR.sub("", html))
        assert "<img" not in own and "<a " not in own and "example.invalid" not in _tags(own)
        assert "<div" not in own


_CODE_SPAN = re.compile(r"`[^`]*`")
_OWN_LINK = re.compile(r'<a href="#kb-[A-Za-z0-9-]+">\[\d+\]</a>')
_OWN_ANCHOR = re.compile(r'<div id="kb-[A-Za-z0-9-]+"></div>')


def _tags(html: str) -> str:
    """Only the markup of `html`, without its text."""
    return " ".join(re.findall(r"<[^>]*>", html))


def test_planted_image_and_tag_show_as_text_in_answer_and_sources(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    app = ask(new_app().run(), SIGNALS_Q)
    no_exception(app)
    answer = fake_ollama.requests_to("/api/chat")[-1].outcome["answer"]
    assert IMAGE_MD in answer and IMAGE_TAG in answer  # the model did repeat them
    sources_text = "\n".join(str(m.value) for m in app.chat_message[1].markdown)
    assert "example" in sources_text  # the passage is among the cited ones
    shown = page_text(app)
    assert shown.count(IMAGE_MD) >= 2 and shown.count(IMAGE_TAG) >= 2  # answer and passage
    assert_nothing_remote(app)
    app.run()  # the answer again, now rendered from the session's history
    assert_nothing_remote(app)
    assert page_text(app).count(IMAGE_MD) >= 2


def test_planted_markup_stays_text_without_ollama(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    fake_ollama.stop()
    app = ask(new_app().run(), SIGNALS_Q)
    no_exception(app)
    assert IMAGE_MD in page_text(app) and IMAGE_TAG in page_text(app)
    assert_nothing_remote(app)
    switch(app, "library")
    assert_nothing_remote(app)
