"""Panel parameter widgets and the code generated from a request (no server needed)."""

from __future__ import annotations

import shlex

import ipywidgets
import pytest

from vman_magic.core.models import CompletionRequest
from vman_magic.notebook.panel import panel
from vman_magic.notebook.panel_code import decode_escapes, encode_escapes, magic_cell, python_call

UNREACHABLE = "http://127.0.0.1:9/v1"  # discard port: nothing listens there


@pytest.fixture
def p():
    return panel(base_url=UNREACHABLE, model="m", prompt="hi")


def test_setting_widgets_changes_params(p) -> None:
    """Moving a slider, typing a seed or adding a stop tag shows up in params."""
    assert p.params == {"max_tokens": 16, "stream": True}  # max_tokens is always sent
    p.controls.widgets["temperature"].value = 0.3
    p.controls.widgets["seed"].value = "42"
    p.controls.widgets["stop"].value = ["\\n", "END"]
    p.controls.widgets["logprobs"].value = "2"
    p.stream.value = False
    assert p.params == {
        "temperature": 0.3,
        "max_tokens": 16,
        "seed": 42,
        "stop": ["\n", "END"],
        "logprobs": 2,
        "stream": False,
    }


def test_initial_values_come_from_panel_arguments() -> None:
    """panel(**defaults) fills the widgets and keeps parameters without a widget."""
    p = panel(base_url=UNREACHABLE, model="m", max_tokens=7, stop="\n", suffix="END", var="r")
    assert p.params == {"max_tokens": 7, "stop": ["\n"], "suffix": "END", "stream": True}
    assert p.controls.widgets["stop"].value == ["\\n"]
    assert p.var.value == "r"


def test_unknown_initial_parameter_is_rejected_with_a_hint() -> None:
    """A misspelt parameter name fails at once and suggests the right one."""
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        panel(base_url=UNREACHABLE, model="m", temprature=0.5)


def test_invalid_combination_disables_run_with_inline_message(p) -> None:
    """best_of with streaming is shown next to best_of, and Run is disabled."""
    p.controls.widgets["best_of"].value = 3
    assert p.run_button.disabled
    assert "best_of cannot be streamed" in p.controls.messages["best_of"].value
    p.stream.value = False
    assert not p.run_button.disabled
    assert p.controls.messages["best_of"].value == ""


def test_too_many_stops_and_bad_seed_are_shown_inline(p) -> None:
    """More than four stop tags and a non-numeric seed each get their own message."""
    p.controls.widgets["stop"].value = ["a", "b", "c", "d", "e"]
    assert "at most 4" in p.controls.messages["stop"].value and p.run_button.disabled
    p.controls.widgets["stop"].value = ["a"]
    p.controls.widgets["seed"].value = "abc"
    assert "seed must be an integer" in p.controls.messages["seed"].value and p.run_button.disabled


def test_bad_variable_name_blocks_run(p) -> None:
    """The result name must be an identifier; otherwise Run is disabled with a message."""
    p.var.value = "not a name"
    assert p.run_button.disabled and "variable name" in p.var_message.value


def test_unreachable_endpoint_gives_inline_model_message(p) -> None:
    """When the model list cannot be fetched the panel says so next to the model box."""
    assert "cannot list models" in p.model_message.value
    assert p.model.value == "m"  # the typed id still works


def test_without_front_end_the_panel_describes_itself_in_one_line(p) -> None:
    """Outside a kernel the mimebundle is one plain-text line, not a widget repr."""
    bundle = p._repr_mimebundle_()
    assert list(bundle) == ["text/plain"] and "\n" not in bundle["text/plain"]


def test_api_key_never_shown(p) -> None:
    """The key passed to the panel appears in neither its repr nor its generated code."""
    q = panel(base_url=UNREACHABLE, api_key="sk-secret-123", model="m", prompt="x")
    assert "sk-secret-123" not in repr(q) + q.code + str(q._repr_mimebundle_())


def test_escapes_round_trip() -> None:
    """Stop tags typed as \\n mean a newline, and encoding gives the typed form back."""
    for text in ["\n", "a\tb", "back\\slash", "\r\n", "plain"]:
        assert decode_escapes(encode_escapes(text)) == text
    assert decode_escapes("\\q") == "\\q"


def test_magic_cell_spells_flags_from_params() -> None:
    """The generated %%complete line uses the flag spellings and quotes values."""
    request = CompletionRequest.build(
        "vman-demo", "Hi {name}", stream=False, max_tokens=5, stop=["\n", "a b"], echo=True, best_of=2
    )
    cell = magic_cell(request, "Hi {name}", var="r")
    line, body = cell.split("\n", 1)
    assert body == "Hi {name}"
    argv = shlex.split(line)
    assert argv[:5] == ["%%complete", "--model", "vman-demo", "-o", "r"]
    assert "--no-stream" in argv and "--echo" in argv
    assert argv[argv.index("--max-tokens") + 1] == "5"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--stop"] == ["\\n", "a b"]


def test_python_call_is_valid_python_with_the_same_request() -> None:
    """The generated complete(...) call parses and carries every parameter."""
    request = CompletionRequest.build("vman-demo", "x", temperature=0.5, stop="\n")
    code = python_call(request)
    compile(code, "<panel>", "exec")
    assert "temperature=0.5" in code and "stop='\\n'" in code


def test_stop_tags_have_a_label_like_the_other_parameters(p) -> None:
    """The tag input draws no description, so its row starts with a "stop" label."""
    (row,) = [row for row in p.controls.rows() if p.controls.widgets["stop"] in row.children]
    label = row.children[0]
    assert isinstance(label, ipywidgets.Label) and label.value == "stop"


def test_sliders_are_wide_enough_for_their_steps(p) -> None:
    """Sliders grow with the panel instead of keeping ipywidgets' 300px (a 74px track after the label)."""
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        layout = p.controls.widgets[name].layout
        assert layout.flex == "1 1 auto" and int(layout.min_width.removesuffix("px")) >= 300


def test_copy_as_code_box_holds_the_current_code(p) -> None:
    """The front-end box always holds the %%complete cell and the Python call Run would send, or what to fix."""
    assert p.code_box.cell == p.magic_code and p.code_box.error == ""
    assert p.code.endswith(p.code_box.python) and p.code.startswith(p.code_box.cell)
    compile(p.code_box.python, "<panel>", "exec")
    p.controls.widgets["temperature"].value = 0.5
    assert "--temperature 0.5" in p.code_box.cell and "temperature=0.5" in p.code_box.python
    p.controls.widgets["seed"].value = "abc"
    assert p.code_box.error.startswith("fix the settings first: seed must be an integer")
    assert p.code_box.anchor == p.model_id  # the browser inserts the new cell below this panel's output


def test_insert_falls_back_to_the_kernel_where_the_front_end_cannot(p, shell) -> None:
    """A front end without a notebook model asks the kernel, which queues the cell with set_next_input."""
    q = panel(base_url=UNREACHABLE, model="m", prompt="hi", shell=shell)
    q.code_box._handle(q.code_box, {"event": "insert"}, [])
    assert shell.rl_next_input == q.magic_code
    assert "next cell you run" in q.status.value
    shell.rl_next_input = None


def test_snapshot_shows_the_settings_and_no_run_yet(p) -> None:
    """Before any run the snapshot names the model, the prompt and the parameters, escaped."""
    q = panel(base_url=UNREACHABLE, model="m<x>", prompt="<b>hi</b>", max_tokens=7)
    bundle = q._snapshot()
    assert 'class="vman-panel-snapshot"' in bundle["text/html"] and "no run yet" in bundle["text/html"]
    assert "&lt;b&gt;hi&lt;/b&gt;" in bundle["text/html"] and "m&lt;x&gt;" in bundle["text/html"]
    assert "max_tokens=7" in bundle["text/plain"] and "<b>" not in bundle["text/html"].split("</style>", 2)[-1]
