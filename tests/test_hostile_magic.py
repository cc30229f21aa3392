"""Hostile answers through %%complete: the text is stored, the error is one line, the key never shows."""

from __future__ import annotations

from typing import Any

import pytest

from vman_magic.core.errors import APIResponseError, VmanError

pytestmark = pytest.mark.timeout(60)
KEY = "sk-magic-hostile-55aa66bb77cc"


@pytest.mark.parametrize("case", ["text_number", "choices_int", "usage_list", "logprobs_str"])
def test_wrong_shape_in_a_cell_keeps_the_text_in_the_variable(
    vman_shell: Any, hostile: Any, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o r holds the text that arrived before the bad event; the cell fails with one line naming the field."""
    with pytest.raises(APIResponseError) as info:
        vman_shell.run_cell_magic("complete", f"--base-url {hostile.url(case)} -m m -o r", "hi")
    lines = info.value._render_traceback_()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "wrong shape" in lines[0] and "`r`" in lines[0]
    r = vman_shell.user_ns["r"]
    assert r.text == "Hello" and r.incomplete and vman_shell.user_ns["_completion"] is r
    r._repr_mimebundle_()
    str(r.show_probabilities())


def test_key_echoed_into_a_cell_is_masked(vman_shell: Any, hostile: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An error event echoing the Authorization header shows ``Bearer ****`` in the cell, the footer and r.error."""
    from vman_magic.core import config as _config

    _config.set_session(api_key=KEY)
    with pytest.raises(VmanError) as info:
        vman_shell.run_cell_magic("complete", f"--base-url {hostile.url('echo_error_event')} -m m -o r", "hi")
    out = capsys.readouterr()
    shown = "\n".join(
        [*info.value._render_traceback_(), out.out, out.err, str(vman_shell.user_ns["r"].error)]  # type: ignore[attr-defined]
    )
    assert "Bearer ****" in shown and KEY not in shown and KEY[:12] not in shown


def test_over_with_one_bad_answer_fails_only_that_item(
    vman_shell: Any, hostile: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--over: the item whose answer had the wrong shape is named in one line; the others are in the result."""
    vman_shell.user_ns["qs"] = [f"q{i}" for i in range(12)] + ["q @@"]
    vman_shell.run_cell_magic(
        "complete", f"--over qs --base-url {hostile.url('text_number', marked=True)} -m m -o res", "{item}"
    )
    res = vman_shell.user_ns["res"]
    assert res.failed == [12] and res.texts[:12] == ["Hello"] * 12
    assert "item 12 failed: APIResponseError" in capsys.readouterr().out
