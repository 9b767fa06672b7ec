"""The params reference, generated from the code: one Markdown table per params.yaml section.

Every section of ``components.config.SECTIONS`` (in order), then every zoo
family's ``Params`` (``registry.ZOO_FAMILIES``), gets a heading, the first
paragraph of its docstring (a zoo family without one: its module's) and a
table ``| key | default | what it is |``: one row per dataclass field, in
order, the default as YAML writes it, and the text of the field's comment
in the source of the class that declares it (an inherited field: its base
class). A field's comment is the ``# ...`` on its own line(s), continued by
the comment-only lines right below it:

    lr: float = 0.1  # learning rate of the binary layers
    # (continued: the same row)

A field without a comment is a ``ValueError`` that names it, so a new knob
cannot go undocumented. ``dul params`` prints the reference; ``dul params
--check README.md`` compares it with the README's copy between ``BEGIN`` and
``END`` (tests/test_readme.py runs it).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
from pathlib import Path

import yaml

from components.config import SECTIONS, json_ready
from components.errors import DulError

BEGIN = "<!-- params:begin -->"
END = "<!-- params:end -->"


def reference(families: tuple[str, ...] = ()) -> str:
    """The reference as Markdown: the stages' sections, then the given zoo families'.
    docs/params.md holds the stages' (a family's section is documented by its own
    file, ``dul params --family NAME``, so adding a family changes no shared doc)."""
    from components.models.registry import params_class

    tables = [section_table(name, cls) for name, cls in SECTIONS.items()]
    for family in families:
        cls = params_class(family)
        intro = docstring_intro(cls) or _first_paragraph(sys.modules[cls.__module__].__doc__)
        tables.append(section_table(family, cls, intro))
    return "\n\n".join(tables) + "\n"


def family_reference(family: str) -> str:
    """One zoo family's section, as ``reference`` writes it."""
    from components.models.registry import params_class

    cls = params_class(family)
    intro = docstring_intro(cls) or _first_paragraph(sys.modules[cls.__module__].__doc__)
    return section_table(family, cls, intro) + "\n"


def section_table(section: str, cls: type, intro: str | None = None) -> str:
    """One section: a heading, its intro (default: its docstring's first paragraph), its table."""
    comments = field_comments(cls)
    intro = intro if intro is not None else docstring_intro(cls)
    lines = [f"### `{section}`", ""] + ([intro, ""] if intro else [])
    lines += ["| key | default | what it is |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        value = yaml_value(default(field)).replace("|", "\\|")
        lines.append(f"| `{section}.{field.name}` | `{value}` | {_cell(comments[field.name])} |")
    return "\n".join(lines)


def field_comments(cls: type) -> dict[str, str]:
    """Each field of dataclass ``cls`` and its comment, from the class that declares it
    (the most derived one, so a field redeclared without a comment has none)."""
    comments: dict[str, str] = {}
    owner: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            declared = _declared_comments(klass)
            comments.update(declared)
            owner.update(dict.fromkeys(declared, klass))
    for field in dataclasses.fields(cls):
        if not comments.get(field.name):
            where = owner.get(field.name, cls)
            raise ValueError(f"{cls.__qualname__}.{field.name} has no comment (declared in {where.__module__}."
                             f"{where.__qualname__}): write what it is after the field, "
                             f"`{field.name}: ... = ...  # what it is`; the params reference is made from it")
    return {field.name: comments[field.name] for field in dataclasses.fields(cls)}


def _declared_comments(klass: type) -> dict[str, str]:
    """The fields ``klass``'s own body declares, each with its comment ('' if none)."""
    source = textwrap.dedent(inspect.getsource(klass))
    node = ast.parse(source).body[0]
    comments, comment_only = _comment_lines(source)
    declared = {}
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        text = [comments[n] for n in range(statement.lineno, statement.end_lineno + 1) if n in comments]
        line = statement.end_lineno + 1
        while line in comment_only:  # continuation lines belong to the field above
            text.append(comments[line])
            line += 1
        declared[statement.target.id] = " ".join(t for t in text if t)
    return declared


def _comment_lines(source: str) -> tuple[dict[int, str], set[int]]:
    """{line: comment text without '#'} of ``source``, and the lines that hold only a comment."""
    comments, comment_only = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            line = token.start[0]
            comments[line] = token.string.lstrip("#").strip()
            if token.line.lstrip().startswith("#"):
                comment_only.add(line)
    return comments, comment_only


def docstring_intro(cls: type) -> str | None:
    """The first paragraph of ``cls``'s own docstring (not dataclass's generated signature)."""
    node = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    return _first_paragraph(ast.get_docstring(node))


def _first_paragraph(doc: str | None) -> str | None:
    if not doc:
        return None
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(paragraph.split()).replace("``", "`")


def default(field: dataclasses.Field):
    """A field's default value (a factory called)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def yaml_value(value) -> str:
    """``value`` as YAML writes it on one line: null, true, [256, 128], {a: 1}."""
    text = yaml.safe_dump(json_ready(value), default_flow_style=True, width=float("inf"), sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    """``text`` safe in a table cell: pipes escaped, and outside code spans a ``<`` that would open
    an HTML tag (``<family>``)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", r"\\<", part) for i, part in enumerate(parts))


def documented(text: str, source: str = "README.md") -> str:
    """The reference in ``text`` between ``BEGIN`` and ``END``, stripped; a DulError if the markers are missing."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise DulError(f"{source}: expected one {BEGIN} line and one {END} line after it around the params "
                       "reference; put the output of `dul params` between them")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def check(path: str | Path) -> str | None:
    """None if ``path``'s params reference is ``reference()``; else a one-line message naming the first difference."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DulError(f"{path}: cannot read it ({error.__class__.__name__})") from None
    have = documented(text, str(path)).splitlines()
    want = reference().strip("\n").splitlines()
    if have == want:
        return None
    line = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
    expected = want[line] if line < len(want) else "(the end)"
    return (f"{path}: the params reference differs from the code at its line {line + 1} (expected "
            f"{expected[:80]!r}); put the output of `dul params` between {BEGIN} and {END}")
