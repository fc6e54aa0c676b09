"""The app password: constant-time check, and the Streamlit gate built on it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from streamlit.testing.v1 import AppTest

from ui.auth import password_ok, password_set


@pytest.mark.parametrize(
    ("given", "expected", "ok"),
    [
        ("correct horse", SecretStr("correct horse"), True),
        ("correct hors", SecretStr("correct horse"), False),
        ("correct horse ", SecretStr("correct horse"), False),
        ("Correct horse", SecretStr("correct horse"), False),
        ("", SecretStr("correct horse"), False),
        ("pässwörd", SecretStr("pässwörd"), True),
        ("passwort", SecretStr("pässwörd"), False),
        ("anything", None, False),  # no password configured: nothing matches (fail closed)
        ("", None, False),
        ("", SecretStr(""), False),  # an empty setting counts as no password
    ],
)
def test_password_ok(given: str, expected: SecretStr | None, ok: bool) -> None:
    assert password_ok(given, expected) is ok


def test_password_ok_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import ui.auth

    calls: list[tuple[bytes, bytes]] = []
    real = ui.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ui.auth.hmac, "compare_digest", spy)
    assert not password_ok("short", SecretStr("a much longer password"))
    assert password_ok("same", SecretStr("same"))
    # Both sides reach compare_digest as bytes of equal length, whatever the inputs' lengths.
    assert len(calls) == 2
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)


def test_password_set() -> None:
    assert password_set(SecretStr("x"))
    assert not password_set(SecretStr(""))
    assert not password_set(None)


def _gated_page(password: str) -> None:
    import streamlit as st

    from rag.settings import Settings
    from ui.auth import require_password

    require_password(Settings(app_password=password or None))
    st.write("secret knowledge")


def _run(password: str) -> AppTest:
    app = AppTest.from_function(_gated_page, kwargs={"password": password}, default_timeout=30)
    return app.run()


def _texts(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown]


def test_require_password_does_nothing_without_a_password() -> None:
    app = _run("")
    assert "secret knowledge" in _texts(app)
    assert len(app.text_input) == 0


def test_require_password_stops_the_page_until_the_right_password() -> None:
    app = _run("s3cret")
    assert "secret knowledge" not in _texts(app)
    assert len(app.text_input) == 1

    app.text_input[0].input("wrong")
    app.button[0].click().run()
    assert "secret knowledge" not in _texts(app)
    assert [e.value for e in app.error] == ["Wrong password."]

    app.text_input[0].input("s3cret")
    app.button[0].click().run()
    assert "secret knowledge" in _texts(app)
    assert len(app.text_input) == 0

    app.run()  # the same browser session stays unlocked
    assert "secret knowledge" in _texts(app)
