"""Every user-visible string is translated (issue 8, item 1): templates have no text outside
``{% trans %}`` / ``_()``, every extracted message has a French, German and Italian
translation (non-empty, not fuzzy), and the committed ``.mo`` files match the ``.po`` files."""

from __future__ import annotations

import io
import re
from collections.abc import Collection
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
TRANSLATIONS = ROOT / "idp" / "translations"
LANGUAGES = ("fr", "de", "it")
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy_gettext": None,
    "N_": None,
}
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "true"}
METHODS = [
    ("idp/**.py", "python"),
    ("templates/**.html", "jinja2"),
    ("templates/**.txt", "jinja2"),
]

# Not text: the product's name, and a boolean HTML attribute written by a macro.
NOT_WORDS = {"idp", "checked"}
_ATTRIBUTE_TEXT = re.compile(r'\b(?:aria-label|title|alt|placeholder)="([^"]*)"')


def untranslated_text(source: str) -> list[str]:
    """The pieces of a template's visible text that are outside the translation tags."""
    text = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", " ", text, flags=re.S)
    text = re.sub(
        r"\{%-?\s*block main_class\s*-?%\}.*?\{%-?\s*endblock\s*-?%\}", " ", text, flags=re.S
    )
    found: list[str] = []
    for value in _ATTRIBUTE_TEXT.findall(text):
        plain = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", value)
        if re.search(r"[A-Za-z]{2,}", plain):
            found.append(value)
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", text, flags=re.S)
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
    for line in text.splitlines():
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'\u2019-]*", line) if w not in NOT_WORDS]
        if words:
            found.append(line.strip())
    return found


# Literals inside {{ }} / {% %} ---------------------------------------------------------------
# A string literal with words in an expression is text a reader sees, unless it is one of
# these: a message given to a translating call, an endpoint or a field name given to a code
# call, a template name, a value compared with (``x == "self"``, ``x in ("a", "b")``), a dict
# key, a keyword argument that names code (``type="submit"``), or one of the values below.
_LEXER = Environment(extensions=["jinja2.ext.i18n"])
TRANSLATING_CALLS = {"_", "gettext", "ngettext", "pgettext", "npgettext"}
CODE_CALLS = {"url_for", "get"}  # an endpoint; a form field or dict key
TEMPLATE_STATEMENTS = {"extends", "include", "import", "from"}
COMPARISONS = {"==", "!=", "in"}
NOT_TEXT_KWARGS = {"class_", "cls", "type", "name", "id", "autocomplete", "inputmode", "method"}
NOT_TEXT_VALUES = {"true", "false", "checked", "selected", "disabled", "UTC"}
# Code values a template uses as such (form field names, choices); template -> literals.
ALLOWED_LITERALS = {
    "admin/sso.html": {
        "tenant_id", "client_id", "credential", "certificate", "secret", "domains", "jit",
        "enforce_sso", "allow_guests",
    },
    "organizations/settings.html": {"square", "wide"},
    "_confirm_identity.html": {"password"},
    "account/two_factor.html": {
        "enroll-password", "enroll-error", "regenerate-password", "regenerate-error",
        "disable-password", "disable-error",
    },
    "account/delete.html": {"delete-error"},
    "account/email.html": {"email-error"},
}
Token = tuple[int, str, str]  # (line, kind, value)


def _has_words(literal: str) -> bool:
    """Whether a literal has words once format placeholders (``%(name)s``, ``%Y``) are gone."""
    return re.search(r"[A-Za-z]{2,}", re.sub(r"%\(\w+\)[a-z]|%-?[A-Za-z]", "", literal)) is not None


def _tags(source: str) -> list[list[Token]]:
    """The tokens of each ``{{ }}`` and ``{% %}`` of a template (whitespace left out)."""
    tags: list[list[Token]] = []
    current: list[Token] | None = None
    for line, kind, value in _LEXER.lex(source):
        if kind in ("block_begin", "variable_begin"):
            current = []
            tags.append(current)
        elif kind in ("block_end", "variable_end"):
            current = None
        elif current is not None and kind != "whitespace":
            current.append((line, kind, value))
    return tags


def _enclosing(before: list[Token]) -> tuple[str | None, str | None]:
    """(name of the call whose parenthesis encloses the end of ``before``, the token before
    the innermost open bracket)."""
    depth = 0
    for i in range(len(before) - 1, -1, -1):
        kind, value = before[i][1], before[i][2]
        if kind == "operator" and value in ")]}":
            depth += 1
        elif kind == "operator" and value in "([{":
            if depth:
                depth -= 1
                continue
            previous = before[i - 1] if i else None
            call = previous[2] if value == "(" and previous and previous[1] == "name" else None
            return call, previous[2] if previous else None
    return None, None


def _is_text(tag: list[Token], index: int, allowed: Collection[str]) -> bool:
    literal = tag[index][2][1:-1]
    if not _has_words(literal) or literal in NOT_TEXT_VALUES or literal in allowed:
        return False
    if tag[0][1] == "name" and tag[0][2] in TEMPLATE_STATEMENTS:
        return False
    before = tag[:index]
    after = tag[index + 1 :]
    keyword = len(before) >= 2 and before[-1][2] == "=" and before[-2][1] == "name"
    if keyword and before[-2][2] in NOT_TEXT_KWARGS:
        return False
    if after and after[0][2] == ":":  # a dict key
        return False
    call, opener = _enclosing(before)
    if call in CODE_CALLS or (call in TRANSLATING_CALLS and not keyword):
        return False
    compared = (before and before[-1][2] in COMPARISONS) or (after and after[0][2] in ("==", "!="))
    return not (compared or opener == "in")


def untranslated_literals(source: str, allowed: Collection[str] = ()) -> list[str]:
    """The string literals with words inside a template's ``{{ }}`` / ``{% %}`` that are shown
    as they are, outside ``_()`` / ``gettext()`` / ``ngettext()``: ``line: "literal"``."""
    found: list[str] = []
    for tag in _tags(source):
        for index, (line, kind, value) in enumerate(tag):
            if kind == "string" and _is_text(tag, index, allowed):
                found.append(f"{line}: {value}")
    return found


def _templates() -> list[Path]:
    return sorted(p for p in TEMPLATES.rglob("*") if p.suffix in (".html", ".txt"))


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_text_outside_translation_tags(path: Path) -> None:
    assert untranslated_text(path.read_text()) == []


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_text_in_expressions_outside_translation_calls(path: Path) -> None:
    allowed = ALLOWED_LITERALS.get(str(path.relative_to(TEMPLATES)), set())
    assert untranslated_literals(path.read_text(), allowed) == []


def test_the_expression_check_catches_forgotten_literals() -> None:
    source = (
        '{% extends "base.html" %}{% from "_macros.html" import button %}\n'
        '{% set title = "Members" %}{{ "Save" }}\n'
        '{{ x or "None" }} {{ button("Remove", class_="danger") }}\n'
        '{{ field(placeholder="Search members") }} {{ _("Hello %(n)s", n="world") }}\n'
        "{{ _('Sign in') }} {{ url_for('login.login_form', next='/account') }}\n"
        '{% if kind == "self" or kind in ("admin", "owner") %}{{ "checked" }}{% endif %}\n'
        '{{ {"always": _("Every time")}[c] }} {{ when.strftime("%Y-%m-%d") }}\n'
        "{{ form.get('tenant_id', '') }} {% trans url=url_for('x') %}a{% endtrans %}\n"
        '{{ "square" }}\n'
    )
    assert untranslated_literals(source, {"square"}) == [
        '2: "Members"',
        '2: "Save"',
        '3: "None"',
        '3: "Remove"',
        '4: "Search members"',
        '4: "world"',
    ]


def test_the_check_catches_a_forgotten_string(tmp_path: Path) -> None:
    template = tmp_path / "forgotten.html"
    template.write_text(
        '{% extends "base.html" %}\n{% block content %}\n'
        "<h1>{% trans %}Sign in{% endtrans %}</h1>\n"
        "<p>Welcome back, {{ name }}.</p>\n"
        '<a href="/x" aria-label="{{ _("Close") }}">&#215;</a>\n'
        '<img src="/y" alt="Company logo">\n'
        "{% endblock %}\n"
    )
    assert untranslated_text(template.read_text()) == [
        "Company logo",
        "Welcome back,  .",
    ]


def _extracted() -> set[str | tuple[str, ...]]:
    ids: set[str | tuple[str, ...]] = set()
    for found in extract_from_dir(
        str(ROOT),
        method_map=METHODS,
        options_map={"templates/**.html": JINJA_OPTIONS, "templates/**.txt": JINJA_OPTIONS},
        keywords=KEYWORDS,
    ):
        message = found[2]  # (filename, lineno, message, comments, context)
        ids.add(message if isinstance(message, str) else tuple(message))
    return ids


@pytest.fixture(scope="module")
def extracted() -> set[str | tuple[str, ...]]:
    found = _extracted()
    assert len(found) > 500  # the extraction itself works
    return found


def _catalog(lang: str) -> Catalog:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated(
    lang: str, extracted: set[str | tuple[str, ...]]
) -> None:
    catalog = _catalog(lang)
    missing, empty, fuzzy = [], [], []
    for msgid in extracted:
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalog.get(key)
        if message is None:
            missing.append(msgid)
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            empty.append(msgid)
        if message.fuzzy:
            fuzzy.append(msgid)
    assert missing == [], f"not in {lang}/messages.po: run pybabel update (see README)"
    assert empty == []
    assert fuzzy == []
    assert not catalog.fuzzy


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalogs_match_the_po_files(lang: str) -> None:
    mo = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo"
    with mo.open("rb") as f:
        committed = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    buffer = io.BytesIO()
    write_mo(buffer, _catalog(lang))
    buffer.seek(0)
    fresh = {_key(m.id): _key(m.string) for m in read_mo(buffer) if m.id}
    assert committed == fresh, f"run: pybabel compile -d idp/translations ({lang} is stale)"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_the_placeholders(lang: str) -> None:
    placeholder = re.compile(r"%\(\w+\)s|\{who\}")
    for message in _catalog(lang):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(placeholder.findall(ids[-1]))
        for string in strings:
            assert set(placeholder.findall(string)) == expected, (lang, message.id)
