"""Hostile answers in batches: one bad answer fails only its item; a double Ctrl-C keeps ``.partial``."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pandas as pd
import pytest

from vman_magic import complete_frame, complete_many, run_sweep
from vman_magic.batch.engine import prepare
from vman_magic.batch.many import BatchInterrupted, run_blocking
from vman_magic.core.config import Settings
from vman_magic.core.errors import APIResponseError
from vman_magic.testing import url

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("case", ["text_number", "usage_str", "choices_int", "deep", "int_event"])
@pytest.mark.parametrize("stream", [True, False])
def test_one_bad_answer_fails_only_its_item(hostile: Any, case: str, stream: bool) -> None:
    """Among 40 prompts the one the server answers with a wrong shape fails; the other 39 keep their text."""
    prompts = [f"prompt {i}" for i in range(40)]
    prompts[17] = "prompt @@ 17"
    result = complete_many(
        prompts, base_url=hostile.url(case, marked=True), model="m", stream=stream, max_retries=0, progress=False
    )
    assert result.failed == [17]
    assert result[17].incomplete and "\n" not in str(result[17].error)
    assert all(c.text == "Hello" for i, c in enumerate(result) if i != 17)
    assert len(result.texts) == 40  # reading every text (what assembling a table does) does not raise
    str(result)


def test_frame_and_sweep_keep_the_good_rows(hostile: Any) -> None:
    """complete_frame and run_sweep build their table even when one answer had the wrong shape."""
    df = pd.DataFrame({"q": ["a", "b @@", "c"]})
    frame = complete_frame(df, "{q}", base_url=hostile.url("text_number", marked=True), model="m", progress=False)
    assert list(frame["completion"]) == ["Hello", "", "Hello"]
    assert frame["completion_error"][1].startswith("APIResponseError") and frame["completion_error"][0] == ""
    sweep = run_sweep(
        "hi", {"temperature": [0.0, 0.25, 0.5]}, base_url=hostile.url("choices_int", marked=True), model="m",
        show=False,
    )  # fmt: skip
    errors = list(sweep.table["error"])
    assert errors[0] == errors[2] == "" and errors[1].startswith("APIResponseError")
    assert isinstance(sweep.completions[1].error, APIResponseError)


class _InterruptingWatcher:
    """Closing the view of an interrupted batch is where a second Ctrl-C arrives in this test."""

    def __init__(self) -> None:
        self.closed = 0

    def snapshot(self, run: Any) -> None:
        return None

    def render(self, snap: None) -> None:
        pass

    def close(self, snap: None) -> None:
        self.closed += 1
        os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C, while the batch cleans up
        threading.Event().wait(0.05)  # the handler runs here, in the main thread


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_double_ctrl_c_still_raises_batch_interrupted_with_partial(demo_server: Any) -> None:
    """A second SIGINT during the clean-up of an interrupted batch does not escape as a bare KeyboardInterrupt."""
    settings = Settings(base_url=url(demo_server, fault="hang"), model="vman-demo", max_retries=0)
    run = prepare([(f"p{i}", {}) for i in range(6)], settings=settings, concurrency=2)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # the first Ctrl-C
    timer.start()
    watcher = _InterruptingWatcher()
    try:
        with pytest.raises(BatchInterrupted) as info:
            run_blocking(run, watcher)
    finally:
        timer.cancel()
    assert watcher.closed == 1
    partial = info.value.partial
    assert len(partial) == 6 and partial.interrupted and all(c.incomplete for c in partial)
