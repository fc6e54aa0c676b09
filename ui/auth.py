"""The app's optional password (KB_APP_PASSWORD), asked once per browser session.

Call `require_password(settings)` at the top of the page, before anything of the knowledge
base is shown: with no password set it does nothing; otherwise it shows a password field and
stops the page until the right password was given in this browser session.

The password is asked again after a reload, and the form says why: a reload starts a new
session, and keeping the app unlocked across it would need a credential stored in the browser
(Streamlit's scripts can set no HttpOnly cookie, and the address or a cookie scripts can read
are no place for one). Sign-in with OIDC (`ui/login.py`) survives reloads.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from rag.settings import Settings

SESSION_KEY = "kb_auth"
APP_NAME = "Knowledge base"
RELOAD_NOTE = (
    "The password is asked again after every reload: the app keeps it only in this tab's "
    "session on the server, never in the browser (a cookie or the address). For a sign-in "
    "that survives reloads, ask the administrator to set up OIDC sign-in."
)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def password_set(expected: SecretStr | None) -> bool:
    """True when a (non-empty) password is configured."""
    return expected is not None and expected.get_secret_value() != ""


def password_ok(given: str, expected: SecretStr | None) -> bool:
    """Whether `given` is the configured password, compared in constant time.

    Both sides are hashed first so the comparison takes the same time whatever their lengths.
    With no password configured nothing matches (fail closed); `require_password` is what lets
    everyone in when no password is set.
    """
    if not password_set(expected):
        return False
    assert expected is not None
    return hmac.compare_digest(_digest(given), _digest(expected.get_secret_value()))


def _session_token(expected: SecretStr) -> str:
    """What the session keeps once unlocked: changes with the password, so a new one locks."""
    return hashlib.sha256(b"kb-session:" + _digest(expected.get_secret_value())).hexdigest()


def password_unlocked(settings: Settings) -> bool:
    """Whether this session may go on: no password set, or the right one given."""
    expected = settings.app_password
    if not password_set(expected):
        return True
    assert expected is not None
    import streamlit as st

    token = _session_token(expected)
    return hmac.compare_digest(str(st.session_state.get(SESSION_KEY, "")), token)


def require_password(settings: Settings) -> None:
    """Stop the Streamlit page until this browser session has given the app password."""
    if password_unlocked(settings):
        return
    expected = settings.app_password
    assert expected is not None
    import streamlit as st

    token = _session_token(expected)
    st.title(APP_NAME)
    with st.form("kb-password", clear_on_submit=True):  # a wrong password is not kept shown
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Unlock")
    if submitted:
        if password_ok(given, expected):
            st.session_state[SESSION_KEY] = token
            st.rerun()
        st.error("Wrong password.")
    st.caption(RELOAD_NOTE)
    st.stop()
