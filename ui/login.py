"""Who may use the app: OpenID Connect sign-in (Streamlit's `st.login`) when
`.streamlit/secrets.toml` has an `[auth]` section, else the optional shared password
(`ui/auth.py`, KB_APP_PASSWORD).

With sign-in, each user has their own saved conversations (keyed by the provider's issuer and
subject); Streamlit keeps the identity in its own signed, HttpOnly cookie, so a reload keeps the
user signed in. See DEPLOYMENT.md, "Sign-in (OIDC)".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from rag.settings import Settings
from ui.auth import APP_NAME, password_unlocked, require_password
from ui.plain import escape_markdown

AUTH_SECTION = "auth"


def _auth_section() -> Mapping[str, Any] | None:
    if not st.secrets.load_if_toml_exists():
        return None  # no secrets.toml, or one that cannot be read (Streamlit logs why)
    section = st.secrets.get(AUTH_SECTION)
    return section if isinstance(section, Mapping) else None


def oidc_configured() -> bool:
    """Whether sign-in is configured (an `[auth]` section in `.streamlit/secrets.toml`)."""
    return _auth_section() is not None


def providers() -> list[str | None]:
    """The providers to offer: the named `[auth.<name>]` ones, else the unnamed one (None)."""
    section = _auth_section() or {}
    named = [name for name, value in section.items() if isinstance(value, Mapping)]
    return list(named) or [None]


def signed_in() -> bool:
    return oidc_configured() and bool(st.user.get("is_logged_in"))


def signed_in_identity() -> tuple[str | None, str | None]:
    """(issuer, subject) of the signed-in user; (None, None) without sign-in."""
    if not signed_in():
        return None, None
    issuer, subject = st.user.get("iss"), st.user.get("sub")
    return (str(issuer) if issuer else None), (str(subject) if subject else None)


def unlocked(settings: Settings) -> bool:
    """Whether this session may see the app now (signed in, or past the password gate)."""
    if oidc_configured():
        return signed_in()
    return password_unlocked(settings)


def require_access(settings: Settings) -> None:
    """Stop the page until this session is signed in (OIDC configured) or has given the app
    password (KB_APP_PASSWORD set); with neither, everyone may use the app."""
    if not oidc_configured():
        require_password(settings)
        return
    if signed_in():
        return
    st.title(APP_NAME)
    st.write("Sign in to use the knowledge base.")
    for provider in providers():
        label = f"Sign in with {provider}" if provider else "Sign in"
        if st.button(label, key=f"sign-in-{provider or 'default'}", type="primary"):
            st.login(provider) if provider else st.login()
    st.stop()


def account_sidebar() -> None:
    """The signed-in user's name and a way to sign out (nothing without sign-in)."""
    if not signed_in():
        return
    who = st.user.get("name") or st.user.get("email") or "you"
    st.sidebar.caption(f"Signed in as {escape_markdown(str(who))}")
    if st.sidebar.button("Sign out", key="sign-out"):
        st.logout()
