"""One question to several models at once, each in its own thread with its own `Chain` (and its
own use of the shared store, which is safe to read from several threads).

The threads only produce events; the page's own thread consumes them and draws, since
Streamlit elements belong to the script's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from rag.chain import AnswerResult, Chain
from rag.errors import KBError

Event = str | AnswerResult | KBError
ChainOpener = Callable[[], AbstractContextManager[Chain]]
_DONE = object()


def stream_side_by_side(
    open_chain: ChainOpener, question: str, models: Sequence[str]
) -> Iterator[tuple[int, Event]]:
    """(lane, event) as they come: text deltas, then the lane's `AnswerResult`, or the
    `KBError` that ended the lane. An unexpected error is re-raised here, in the caller."""
    events: queue.Queue[tuple[int, object]] = queue.Queue()
    threads = [
        threading.Thread(
            target=_run_lane,
            args=(lane, open_chain, question, model, events),
            name=f"kb-compare-{lane}",
            daemon=True,
        )
        for lane, model in enumerate(models)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        lane, event = events.get()
        if event is _DONE:
            running -= 1
        elif isinstance(event, str | AnswerResult | KBError):
            yield lane, event
        elif isinstance(event, BaseException):
            raise event
    for thread in threads:
        thread.join()


def _run_lane(
    lane: int,
    open_chain: ChainOpener,
    question: str,
    model: str,
    events: queue.Queue[tuple[int, object]],
) -> None:
    try:
        with open_chain() as chain:
            for event in chain.stream(question, model):
                events.put((lane, event))
    except BaseException as err:  # handed to the page's thread, which shows or re-raises it
        events.put((lane, err))
    finally:
        events.put((lane, _DONE))
