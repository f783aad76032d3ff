"""One bridge from a worker thread to a Gradio generator, shared by the Playground and Tune.

A generation or a search is timed and run in a worker thread that never waits for the
page; the page's generator reads what arrived every ``every`` seconds and re-renders.
The work is a *job*: ``job(emit, should_stop)`` emits progress items and may return a
result, which arrives as the last item. A generator of events becomes a job with
:func:`events_job`. Stopping is one event: the page's Stop sets it, and closing the
reading generator (the page went away) sets it too, so the worker always ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Job", "events_job", "stream_batches"]

Job = Callable[[Callable[[object], None], Callable[[], bool]], object]
"""``job(emit, should_stop) -> result``: the shape of the library's long operations."""

_END = object()


def events_job(events: Iterator[object]) -> Job:
    """A job that emits every event of ``events`` and stops between events when asked."""

    def job(emit: Callable[[object], None], should_stop: Callable[[], bool]) -> None:
        try:
            for event in events:
                emit(event)
                if should_stop():
                    break
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a generation's generator frees its cache slot here

    return job


def stream_batches(
    job: Job, every: float, stop: threading.Event | None = None
) -> Iterator[list[object]]:
    """Run ``job`` in a worker thread; yield the items that arrived, every ``every`` s.

    The job's return value, unless None, is the last item. An error of the job is raised
    here. ``stop`` (a fresh event when not given) is the job's ``should_stop``; it is set
    when this iterator is closed early, so the worker stops with the page.
    """
    stop = stop or threading.Event()
    out: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            result = job(out.put, stop.is_set)
            if result is not None:
                out.put(result)
        except Exception as exc:  # noqa: BLE001 - handed to the page's thread
            out.put(exc)
        finally:
            out.put(_END)

    threading.Thread(target=work, daemon=True, name="ui-job").start()
    batch: list[object] = []
    deadline = time.perf_counter() + every
    finished = False
    try:
        while True:
            try:
                item = out.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                yield batch
                batch, deadline = [], time.perf_counter() + every
                continue
            if item is _END:
                finished = True
                yield batch
                return
            if isinstance(item, Exception):
                finished = True
                raise item
            batch.append(item)
    finally:
        if not finished:
            stop.set()
