"""The kb web app: `streamlit run ui/app.py`.

Five pages (Chat, Compare, Library, Models, Evaluation), each a script under `ui/views/` that
starts with `ui.resources.page_start()` (settings, sign-in or password gate, model servers'
banner).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.login import account_sidebar, require_access, unlocked
from ui.resources import current_settings, warm_up_embedder

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="Knowledge base", layout="wide")
settings = current_settings()
# Navigation first, so that the page the address asks for (a deep link, a reload) is the one
# shown once the session is unlocked; hidden while locked, so a locked session does not even
# see the page list. The gate then stops the script before any page runs.
navigation = st.navigation(
    [
        st.Page(VIEWS / "chat.py", title="Chat", default=True),
        st.Page(VIEWS / "compare.py", title="Compare"),
        st.Page(VIEWS / "library.py", title="Library"),
        st.Page(VIEWS / "models.py", title="Models"),
        st.Page(VIEWS / "evaluation.py", title="Evaluation"),
    ],
    position="sidebar" if unlocked(settings) else "hidden",
)
require_access(settings)
warm_up_embedder(settings)
account_sidebar()
navigation.run()
