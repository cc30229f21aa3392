"""BatchResult, the shared rate-limit gate and the summary line, without a server."""

from __future__ import annotations

import asyncio

from vman_magic.batch.engine import RateGate
from vman_magic.batch.many import BatchResult, Unfinished
from vman_magic.batch.progress import Tally, summary_line
from vman_magic.core.errors import BadRequestError
from vman_magic.core.models import CompletionBuilder, CompletionRequest


def _done(text: str, prompt_tokens: int, completion_tokens: int) -> CompletionBuilder:
    builder = CompletionBuilder(CompletionRequest.build("m", "p", stream=False))
    builder.add(
        {
            "id": "x",
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )
    return builder


def test_batch_result_sums_usage_and_separates_failed_from_unfinished() -> None:
    """usage adds up every item; failed and unfinished list different indices; str is the summary line."""
    ok = _done("a", 2, 3).finish()
    also_ok = _done("b", 4, 5).finish()
    failed = CompletionBuilder().fail(BadRequestError("bad", status_code=400))
    cut = CompletionBuilder().fail(Unfinished("interrupted"))
    result = BatchResult([ok, failed, also_ok, cut], retries=1, interrupted=True, elapsed=2.0)
    assert result.texts == ["a", "", "b", ""]
    assert result.usage.to_dict() == {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14}
    assert result.failed == [1] and result.unfinished == [3]
    assert list(result.errors) == [1, 3]
    assert (
        str(result)
        == "4 prompts: 2 done, 1 failed, 1 not finished; tokens 6 prompt + 8 completion = 14; 1 retry; 2.0 s"
    )
    assert isinstance(result, list) and result[0] is ok


def test_summary_line_pluralises_and_groups_thousands() -> None:
    """Counts read naturally for one item and for thousands of tokens."""
    assert summary_line(Tally(total=1, done=1, prompt_tokens=1200, completion_tokens=34000)) == (
        "1 prompt: 1 done; tokens 1,200 prompt + 34,000 completion = 35,200"
    )


def test_gate_holds_every_waiter_until_the_deadline() -> None:
    """After hold(), each worker's wait() is held back once; backoff() counts a retry and honours the hold."""
    gate = RateGate()

    async def main() -> None:
        await gate.wait()
        assert gate.waits == 0
        gate.hold(0.05)
        await asyncio.gather(gate.wait(), gate.wait(), gate.backoff(0.0))
        assert gate.waits == 3 and gate.retries == 1
        await gate.wait()
        assert gate.waits == 3

    asyncio.run(main())
