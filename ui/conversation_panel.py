"""The chat page's saved conversations: listed in the sidebar, reopened, renamed, deleted and
exported as Markdown, and saved after every answer (`ui/conversations.py` holds the files).

Three hooks for the chat page, which keeps its turns in `st.session_state[turns_key]`:
`reopen_from_address` at the top (after a reload the address's `?c=<id>` brings the
conversation back), `conversation_panel` in the sidebar, `save_conversation` after each turn.
The open conversation's id is in the address, never its content. The export is made only when
its button is clicked, and reaches the browser over the session's own connection, inside a
one-time frame that saves it from a `blob:` address (which only that browser can read): never
at a Streamlit `/media` address, which anyone holding it could fetch without the password.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import streamlit as st

from rag.errors import KBError
from rag.settings import Settings
from ui.conversations import (
    Conversation,
    ConversationStore,
    Listing,
    Summary,
    as_markdown,
    export_file_name,
    new_id,
    now,
    owner_key,
    title_for,
    valid_id,
)
from ui.login import signed_in_identity
from ui.plain import escape_markdown, show_error

LISTING = "chat_conversation_listing"  # (folder and its mtime, Listing): read again on change
CURRENT = "chat_conversation"  # the open conversation's id (None: not saved yet)
CONFIRM_DELETE = "chat_conversation_confirm_delete"
ADDRESS_KEY = "c"  # ?c=<id>: the open conversation, so a reload reopens it
# The export's frame: a link to the Markdown as a `blob:` address, clicked at once (a fixed
# script of kb's own; the Markdown comes base64-encoded, so nothing in it can become markup).
SAVE_FRAME = """<a id="save" download="{name}" style="font: 14px sans-serif">Save {name}</a>
<script>
const bytes = Uint8Array.from(atob("{data}"), c => c.charCodeAt(0));
const link = document.getElementById("save");
link.href = URL.createObjectURL(new Blob([bytes], {{type: "text/markdown"}}));
link.click();
</script>"""


def conversation_store(settings: Settings) -> ConversationStore:
    """This user's conversations (everyone's `shared` ones without sign-in)."""
    issuer, subject = signed_in_identity()
    return ConversationStore(settings.data_dir, owner_key(issuer, subject))


def _open(conversation: Conversation, turns_key: str) -> None:
    st.session_state[turns_key] = conversation.turns
    st.session_state[CURRENT] = conversation.id
    st.session_state.pop(CONFIRM_DELETE, None)
    st.query_params[ADDRESS_KEY] = conversation.id


def start_new(turns_key: str) -> None:
    """An empty chat; the next question starts a new saved conversation."""
    st.session_state[turns_key] = []
    st.session_state[CURRENT] = None
    st.session_state.pop(CONFIRM_DELETE, None)
    st.query_params.pop(ADDRESS_KEY, None)


def reopen_from_address(settings: Settings, turns_key: str) -> None:
    """After a reload (a new session), open the conversation the address names, if it is
    this user's; an id that names none is dropped from the address with a note."""
    wanted = st.query_params.get(ADDRESS_KEY)
    current = st.session_state.get(CURRENT)
    if not wanted and current:
        st.query_params[ADDRESS_KEY] = current  # back from another page: name it again
        return
    if not wanted or current == wanted:
        return
    conversation = conversation_store(settings).load(wanted) if valid_id(wanted) else None
    if conversation is None:
        st.query_params.pop(ADDRESS_KEY, None)
        st.info("The conversation in this address is not among your saved conversations.")
        return
    _open(conversation, turns_key)


def save_conversation(settings: Settings, turns_key: str) -> None:
    """Save the open conversation's turns (a new one is created on its first answer, named
    after its first question); a failed save is said in one sentence, the chat goes on."""
    turns: list[dict[str, Any]] = st.session_state.get(turns_key) or []
    if not turns:
        return
    store = conversation_store(settings)
    current = st.session_state.get(CURRENT)
    conversation = store.load(current) if current else None
    created = conversation is None
    if conversation is None:
        first = next((t["content"] for t in turns if t.get("role") == "user"), "")
        stamp = now()
        conversation = Conversation(new_id(), title_for(str(first)), stamp, stamp)
    conversation.turns = turns
    try:
        store.save(conversation)
    except KBError as err:
        show_error(err)
        return
    _open(conversation, turns_key)
    if created:
        st.rerun()  # so the sidebar lists the new conversation and marks it open


def conversation_panel(settings: Settings, turns_key: str) -> None:
    """The sidebar: a new conversation, the saved ones (newest first), and what can be done
    with the open one."""
    store = conversation_store(settings)
    sidebar = st.sidebar
    if sidebar.button("New conversation", icon=":material/add:", width="stretch"):
        start_new(turns_key)
        st.rerun()
    listing = _listing(store)
    current = st.session_state.get(CURRENT)
    sidebar.subheader("Conversations")
    if not listing.conversations:
        sidebar.caption("Each conversation is saved here after its first answer.")
    box = sidebar.container(height=320) if len(listing.conversations) > 8 else sidebar
    for conversation in listing.conversations:
        chosen = conversation.id == current
        label = escape_markdown(conversation.title)
        kind = "primary" if chosen else "tertiary"
        if box.button(label, key=f"conversation-{conversation.id}", type=kind, width="stretch"):
            _open_saved(store, conversation.id, turns_key)
    if listing.unreadable:
        where = escape_markdown(str(store.folder))
        sidebar.caption(
            f"{listing.unreadable} saved conversation file(s) in {where} could not be read "
            "and are not listed; they were left as they are."
        )
    sidebar.caption(_who_sees_them())
    opened = next((c for c in listing.conversations if c.id == current), None)
    if opened is not None:
        _manage(store, opened, turns_key)


def _listing(store: ConversationStore) -> Listing:
    """The saved conversations, read again only when the folder changed (a save, rename or
    delete renames or removes a file in it), so a rerun costs one stat."""
    try:
        stamp: int | None = store.folder.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(store.folder), stamp)
    cached = st.session_state.get(LISTING)
    if cached is not None and cached[0] == key:
        return cached[1]
    listing = store.listing()
    st.session_state[LISTING] = (key, listing)
    return listing


def _open_saved(store: ConversationStore, conversation_id: str, turns_key: str) -> None:
    conversation = store.load(conversation_id)
    if conversation is None:
        st.sidebar.warning("That conversation is gone; it may have been deleted elsewhere.")
        return
    _open(conversation, turns_key)
    st.rerun()


def _who_sees_them() -> str:
    if signed_in_identity()[1]:
        return "Only you see your conversations."
    return "Without sign-in, everyone who uses this app sees these conversations."


def _manage(store: ConversationStore, conversation: Summary, turns_key: str) -> None:
    with st.sidebar.expander("This conversation: rename, export, delete"):
        title = st.text_input("Name", conversation.title, key=f"title-{conversation.id}")
        if st.button("Rename", key="conversation-rename"):
            try:
                store.rename(conversation.id, title)
            except KBError as err:
                show_error(err)
            else:
                st.rerun()

        if st.button("Export as Markdown", key="conversation-export", icon=":material/download:"):
            _export(store, conversation)
        _delete(store, conversation, turns_key)


def _export(store: ConversationStore, conversation: Summary) -> None:
    """Hand the conversation's Markdown to the browser as a download, in this run only."""
    saved = store.load(conversation.id)
    if saved is None:
        st.warning("That conversation is gone; it may have been deleted elsewhere.")
        return
    data = base64.b64encode(as_markdown(saved).encode("utf-8")).decode("ascii")
    name = html.escape(export_file_name(conversation), quote=True)
    st.iframe(SAVE_FRAME.format(name=name, data=data), height=56)


def _delete(store: ConversationStore, conversation: Summary, turns_key: str) -> None:
    if st.session_state.get(CONFIRM_DELETE) != conversation.id:
        if st.button("Delete…", key="conversation-delete"):
            st.session_state[CONFIRM_DELETE] = conversation.id
            st.rerun()
        return
    st.warning("Delete this conversation for good?")
    left, right = st.columns(2)
    if left.button("Delete", key="conversation-delete-confirm", type="primary"):
        try:
            store.delete(conversation.id)
        except KBError as err:
            show_error(err)
            return
        start_new(turns_key)
        st.rerun()
    if right.button("Keep", key="conversation-delete-cancel"):
        st.session_state.pop(CONFIRM_DELETE, None)
        st.rerun()
