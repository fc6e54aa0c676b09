"""Answers streamed from worker threads, each with its own `Chain` (and its own use of the
shared store, which is safe to read from several threads): the Compare page's 2-4 lanes, and
the Chat page's one.

The threads only produce events; the page's own thread consumes them and draws, since
Streamlit elements belong to the script's thread. With `tick_s` the consumer also gets a
`WAITING` event whenever no other came for that long, so that the page can redraw while a model
reads its prompt: each redraw is where Streamlit notices a Stop click (or any rerun) and ends
the script. Closing the consumer (which a rerun does) cancels every lane: each lane's `Hangup`
closes its request to the model server at once, even while the model still reads its prompt
(no byte has come yet), and a lane that is between events stops at its next one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing

from rag.chain import AnswerResult, Chain, Message
from rag.errors import KBError
from rag.llm.hangup import Hangup

Event = str | AnswerResult | KBError
ChainOpener = Callable[[], AbstractContextManager[Chain]]
WAITING = None  # no event for `tick_s`
_DONE = object()


def stream_side_by_side(
    open_chain: ChainOpener,
    question: str,
    models: Sequence[str],
    history: Sequence[Message] = (),
    tick_s: float | None = None,
) -> Iterator[tuple[int, Event | None]]:
    """(lane, event) as they come: text deltas, then the lane's `AnswerResult`, or the
    `KBError` that ended the lane; with `tick_s`, (-1, WAITING) after each `tick_s` seconds
    without an event. An unexpected error is re-raised here, in the caller. Closing this
    iterator early cancels the lanes still running."""
    events: queue.Queue[tuple[int, object]] = queue.Queue()
    cancel = threading.Event()
    hangups = [Hangup() for _ in models]
    threads = [
        threading.Thread(
            target=_run_lane,
            args=(lane, open_chain, question, model, history, events, cancel, hangups[lane]),
            name=f"kb-lane-{lane}",
            daemon=True,
        )
        for lane, model in enumerate(models)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            try:
                lane, event = events.get(timeout=tick_s)
            except queue.Empty:
                yield -1, WAITING
                continue
            if event is _DONE:
                running -= 1
            elif isinstance(event, str | AnswerResult | KBError):
                yield lane, event
            elif isinstance(event, BaseException):
                raise event
    finally:
        cancel.set()  # lanes still running stop at their next event
        for hangup in hangups:  # and their requests close now, answered or not
            hangup.hang_up()
    for thread in threads:
        thread.join()


def _run_lane(
    lane: int,
    open_chain: ChainOpener,
    question: str,
    model: str,
    history: Sequence[Message],
    events: queue.Queue[tuple[int, object]],
    cancel: threading.Event,
    hangup: Hangup,
) -> None:
    try:
        with (
            open_chain() as chain,
            closing(chain.stream(question, model, history, hangup=hangup)) as stream,
        ):
            for event in stream:
                if cancel.is_set():
                    break  # `closing` ends the stream, and with it the server's request
                events.put((lane, event))
    except BaseException as err:  # handed to the page's thread, which shows or re-raises it
        events.put((lane, err))
    finally:
        events.put((lane, _DONE))
