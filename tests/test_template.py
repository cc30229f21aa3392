"""Tests for safe ``{name}`` interpolation of notebook variables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vman_magic.core.template import TemplateError, render


def test_names_attributes_indexes_and_specs_are_filled() -> None:
    """Names, attribute access, index access, conversions and format specs are substituted."""
    ns = {
        "x": 3.14159,
        "row": SimpleNamespace(title="Dune"),
        "items": ["first", "second"],
        "d": {"key": "K", "two words": 2},
        "name": "Bob",
    }
    out = render("{x:.2f}|{row.title}|{items[0]}|{items[-1]}|{d[key]}|{d['key']}|{d[\"two words\"]}|{name!r}", ns)
    assert out.text == "3.14|Dune|first|second|K|K|2|'Bob'"
    assert out.names == ["x", "row.title", "items[0]", "items[-1]", "d[key]", "d['key']", 'd["two words"]', "name"]
    assert out.unresolved == []


def test_json_and_code_braces_stay_literal() -> None:
    """JSON objects, nested JSON and set literals are not fields and pass through unchanged."""
    ns = {"a": 1}
    for text in ['{"a": 1}', '{"a": {"b": {}}}', "def f():\n    return {1, 2}", "{ a }", "{}"]:
        assert render(text, ns).text == text


def test_undefined_names_stay_literal_and_are_reported() -> None:
    """An identifier that is not a variable is kept as written and listed as unresolved."""
    out = render("Hello {who}, {who} and {nobody.attr}", {})
    assert out.text == "Hello {who}, {who} and {nobody.attr}"
    assert out.unresolved == ["who", "nobody.attr"]
    assert out.names == []


def test_double_braces_escape() -> None:
    """``{{`` and the ``}}`` closing it give literal braces, even around a defined name."""
    ns = {"name": "Bob"}
    assert render("{{name}} {{{name}}}", ns).text == "{name} {Bob}"
    assert render("{name}}", ns).text == "Bob}"


def test_no_code_is_executed() -> None:
    """Calls, operators and expressions are not fields, so nothing is evaluated."""
    calls: list[int] = []
    ns = {"f": lambda: calls.append(1), "x": 2, "os": SimpleNamespace(system=lambda *_: calls.append(2))}
    for text in ["{f()}", "{x + 1}", "{os.system('ls')}", "{__import__('os')}"]:
        assert render(text, ns).text == text
    assert calls == []


def test_private_attributes_are_refused() -> None:
    """Dunder and private attribute access raises instead of leaking internals."""
    with pytest.raises(TemplateError, match="starting with '_'"):
        render("{x.__class__}", {"x": 1})
    with pytest.raises(TemplateError, match="starting with '_'"):
        render("{f.__globals__[secret]}", {"f": render})


def test_bad_attribute_key_or_spec_raises_with_a_hint() -> None:
    """A defined variable whose lookup fails raises a TemplateError naming the field."""
    with pytest.raises(TemplateError, match=r"\{row.titel\}.*no attribute 'titel'"):
        render("{row.titel}", {"row": SimpleNamespace(title="t")})
    with pytest.raises(TemplateError, match=r"\{items\[5\]\}"):
        render("{items[5]}", {"items": [1]})
    with pytest.raises(TemplateError, match="--no-template"):
        render("{x:.2f}", {"x": "text"})


def test_multibyte_text_is_preserved() -> None:
    """Chinese text around and inside fields survives interpolation."""
    assert render("请续写：{topic}。", {"topic": "春天"}).text == "请续写：春天。"
