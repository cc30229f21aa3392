"""``%%complete --over/--sweep`` with ``--rpm``/``--tpm``, through a real IPython shell, against a limited server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from vman_magic.batch.many import BatchResult
from vman_magic.batch.sweep import SweepResult
from vman_magic.testing import serve

ITEMS = [f"Item {i} is" for i in range(40)]


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> Iterator[InteractiveShell]:
    vman_shell.user_ns.update(items=list(ITEMS), df=pd.DataFrame({"n": range(12)}))
    yield vman_shell
    for name in ("items", "df"):
        vman_shell.user_ns.pop(name, None)


def run(ip: InteractiveShell, cell: str) -> Any:
    return ip.run_cell(cell, store_history=False)


def test_over_with_rpm_paces_a_silent_gateway(ip: InteractiveShell) -> None:
    """--rpm 1200 against a gateway that enforces 1,200 rpm without headers: every item, no 429 needed."""
    with serve(rpm=1200, first_token_ms=100, ratelimit_headers=False) as server:
        result = run(
            ip,
            f"%%complete --over items --rpm 1200 --max-tokens 2 --no-stream --base-url {server.base_url} -o r\n{{item}}",
        )
        assert result.success, result.error_in_exec
        r = ip.user_ns["r"]
        assert isinstance(r, BatchResult) and r.failed == [] and len(r) == len(ITEMS)
        assert r.budget == "1,200 requests/min given"
        assert server.stats.completions == len(ITEMS) and server.stats.rate_limited == r.rate_limited <= 3


def test_over_without_flags_learns_the_limit_from_headers(ip: InteractiveShell) -> None:
    """No flag at all: the batch reads the server's x-ratelimit headers and paces to them."""
    with serve(rpm=1200, first_token_ms=100) as server:
        result = run(ip, f"%%complete --over items --max-tokens 2 --base-url {server.base_url} -o r\n{{item}}")
        assert result.success, result.error_in_exec
        r = ip.user_ns["r"]
        assert r.failed == [] and r.budget == "1,200 requests/min from the server's headers"
        assert server.stats.rate_limited == r.rate_limited <= 3


def test_over_a_frame_and_a_sweep_take_budgets(ip: InteractiveShell) -> None:
    """--tpm reaches complete_frame (--over a DataFrame) and run_sweep (--sweep)."""
    with serve(tpm=30_000, first_token_ms=50, ratelimit_headers=False) as server:
        cell = f"%%complete --over df --tpm 30000 --max-tokens 4 --base-url {server.base_url} -o r\nNumber {{n}} is"
        assert run(ip, cell).success
        frame = ip.user_ns["r"]
        assert isinstance(frame, pd.DataFrame) and (frame["completion_error"] == "").all()
        cell = f"%%complete --sweep temperature=0,1 --tpm 30000 --max-tokens 4 --base-url {server.base_url} -o r\nOnce"
        assert run(ip, cell).success
        sweep = ip.user_ns["r"]
        assert isinstance(sweep, SweepResult) and sweep.completions.budget == "30,000 tokens/min given"
        assert server.stats.rate_limited <= 3


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%complete --over items --rpm 0\n{item}", "--rpm must be a number > 0 (requests per minute), got 0"),
        ("%%complete --sweep temperature=0,1 --tpm -3\nOnce", "--tpm must be a number > 0 (tokens per minute)"),
        ("%%complete --rpm 60\nOnce", "--rpm and --tpm pace many requests: use them with --over or --sweep"),
        ("%%complete --over items --rpm fast\n{item}", "argument --rpm: invalid float value: 'fast'"),
    ],
)
def test_bad_budget_flags_are_one_line_usage_errors(
    ip: InteractiveShell, demo_server: Any, cell: str, message: str
) -> None:
    """A budget flag that cannot work says what to change, and nothing is sent."""
    before = demo_server.stats.completions
    result = run(ip, cell)
    assert isinstance(result.error_in_exec, UsageError) and message in str(result.error_in_exec)
    assert demo_server.stats.completions == before


def test_help_documents_the_budget_flags(ip: InteractiveShell) -> None:
    """%%complete? lists --rpm and --tpm with what they default to."""
    doc = ip.find_cell_magic("complete").__doc__ or ""
    assert "--rpm N" in doc and "--tpm N" in doc and "rate-limit headers" in doc
