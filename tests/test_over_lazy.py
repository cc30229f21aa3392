"""--over and complete_many read long, unsized or one-shot iterables lazily: dry runs show the first few."""

from __future__ import annotations

import itertools
import os
import signal
import threading
from typing import Any

import pytest
from IPython.core.error import UsageError

from vman_magic import complete_many
from vman_magic.batch.many import BatchInterrupted
from vman_magic.core.errors import ValidationError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("expr", "count"), [("range(10**9)", "1000000000 items"), ("itertools.count()", "an unknown")])
def test_dry_run_over_a_huge_iterable_shows_the_first_few(
    vman_shell: Any, capsys: pytest.CaptureFixture[str], expr: str, count: str
) -> None:
    """range(10**9) and itertools.count() are not read into memory: the dry run renders three items."""
    vman_shell.user_ns["itertools"] = itertools
    vman_shell.user_ns["many"] = eval(expr, {"itertools": itertools})
    vman_shell.run_cell_magic("complete", "--over many --dry-run", "Number {item}:")
    out = capsys.readouterr().out
    assert count in out and "the first 3" in out and "Number 2:" in out and "Number 3:" not in out


def test_dry_run_over_an_iterator_says_it_was_used(vman_shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A generator cannot be shown without taking items from it: the dry run says so."""
    vman_shell.user_ns["gen"] = (f"q{i}" for i in range(10))
    vman_shell.run_cell_magic("complete", "--over gen --dry-run", "{item}")
    assert "is an iterator" in capsys.readouterr().out


def test_over_a_generator_runs_lazily_and_fails_only_bad_items(
    vman_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items of a generator are rendered one by one; an item whose field fails fails alone."""

    class Bad:
        @property
        def name(self) -> str:
            raise RuntimeError("no name")

    class Good:
        name = "ok"

    vman_shell.user_ns["rows"] = (Bad() if i == 4 else Good() for i in range(10))
    vman_shell.run_cell_magic("complete", "--over rows --max-tokens 2 -o res", "Say {item.name}")
    res = vman_shell.user_ns["res"]
    assert len(res) == 10 and res.failed == [4]
    assert "RuntimeError: no name" in str(res[4].error)


def test_over_an_endless_iterable_can_be_interrupted(vman_shell: Any) -> None:
    """itertools.count() runs until Ctrl-C, which keeps every result so far in -o and _completion."""
    vman_shell.user_ns["endless"] = itertools.count()
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(BatchInterrupted):
            vman_shell.run_cell_magic("complete", "--over endless --max-tokens 2 -o res", "Count {item}")
    finally:
        timer.cancel()
    res = vman_shell.user_ns["res"]
    assert len(res) > 0 and res.interrupted and res[0].text is not None


def test_complete_many_over_a_generator(demo_server: Any) -> None:
    """complete_many takes a generator and keeps input order; a bad later item fails alone."""
    prompts = (["fine", 5, "also fine"][i % 3] for i in range(9))
    result = complete_many(prompts, base_url=demo_server.base_url, model="vman-demo", max_tokens=2, progress=False)
    assert len(result) == 9 and result.failed == [1, 4, 7]
    assert all(isinstance(result[i].error, ValidationError) for i in result.failed)


def test_over_a_first_item_with_a_template_error_fails_the_cell(vman_shell: Any) -> None:
    """The first item is rendered before anything is sent, so a typo still fails at once."""
    vman_shell.user_ns["gen"] = iter([{"a": 1}])
    with pytest.raises(UsageError, match="item 0"):
        vman_shell.run_cell_magic("complete", "--over gen", "{item[b]}")
