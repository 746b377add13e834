"""Mark the strings of a models.py for translation: every field gets ``verbose_name=_("…")`` (the label Django
would derive, so English pages do not change), help texts and choice labels are wrapped in ``_()``, and each
model's Meta gets ``verbose_name``/``verbose_name_plural``. For an app that adds models later, then
``ruff check --fix`` (import order), ``makemigrations <app> --name verbose_names_translatable`` (labels only:
no SQL) and ``bin/messages``::

    .venv/bin/python -m hub.mark_models products/models.py

tests/test_i18n.py::test_every_model_field_admin_column_and_action_of_ours_is_translatable names what is left.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

LINE_LIMIT = 120
MODEL_BASES = ("models.Model", "UpstreamRecord", "CustomerPhone", "PerformanceFields")
RELATIONS = ("models.ForeignKey", "models.OneToOneField", "models.ManyToManyField")
IMPORT = "from django.utils.translation import gettext_lazy as _\n"


def _words(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()


def _is_field(call: ast.Call) -> bool:
    name = ast.unparse(call.func)
    return (name.startswith("models.") and name.endswith("Field")) or name in RELATIONS or name == "SecretField"


def mark(source: str) -> str:
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def pos(lineno: int, col: int) -> int:  # ast columns are UTF-8 byte offsets
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    edits: list[tuple[int, str]] = []

    def wrap(node: ast.AST) -> None:
        edits.append((pos(node.lineno, node.col_offset), "_("))
        edits.append((pos(node.end_lineno, node.end_col_offset), ")"))

    for cls in (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)):
        bases = [ast.unparse(b) for b in cls.bases]
        is_choices = any(b.endswith("Choices") for b in bases)
        is_model = any(b in MODEL_BASES for b in bases)
        for stmt in cls.body:
            if is_choices and isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Tuple):
                label = stmt.value.elts[-1]
                if len(stmt.value.elts) == 2 and isinstance(label, ast.Constant) and isinstance(label.value, str):
                    wrap(label)
            if not is_model:
                continue
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and _is_field(stmt.value)):
                call = stmt.value
                keywords = {k.arg: k for k in call.keywords}
                if "help_text" in keywords and isinstance(keywords["help_text"].value, ast.Constant):
                    wrap(keywords["help_text"].value)
                if "verbose_name" in keywords:
                    continue
                text = f'verbose_name=_("{stmt.targets[0].id.replace("_", " ")}")'
                if call.args:
                    last = call.args[-1]
                    edits.append((pos(last.end_lineno, last.end_col_offset), ", " + text))
                else:
                    at = pos(call.func.end_lineno, call.func.end_col_offset) + 1  # after "("
                    edits.append((at, text + (", " if call.keywords else "")))
            if isinstance(stmt, ast.ClassDef) and stmt.name == "Meta":
                meta = {t.targets[0].id: t for t in stmt.body if isinstance(t, ast.Assign)
                        and isinstance(t.targets[0], ast.Name)}
                for key in ("verbose_name", "verbose_name_plural"):
                    if key in meta and isinstance(meta[key].value, ast.Constant):
                        wrap(meta[key].value)
                if "abstract" in meta:
                    continue
                indent = " " * stmt.body[0].col_offset
                add = "".join(f'{indent}{key} = _("{_words(cls.name)}{suffix}")\n'
                              for key, suffix in (("verbose_name", ""), ("verbose_name_plural", "s"))
                              if key not in meta)
                if add:
                    edits.append((starts[stmt.body[0].lineno - 1], add))
        if is_model and not any(isinstance(s, ast.ClassDef) and s.name == "Meta" for s in cls.body):
            last = None
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef):
                    break
                last = stmt
            words = _words(cls.name)
            edits.append((starts[last.end_lineno], f'\n    class Meta:\n        verbose_name = _("{words}")\n'
                                                   f'        verbose_name_plural = _("{words}s")\n'))
    out = source
    for at, text in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:at] + text + out[at:]
    if edits and IMPORT not in out:
        out = out.replace("from django.db import models\n", "from django.db import models\n" + IMPORT, 1)
    return out


def split_line(line: str) -> list[str]:
    """Break a line longer than LINE_LIMIT after its outermost comma that fits, aligned under the bracket."""
    if len(line) <= LINE_LIMIT:
        return [line]
    indent = len(line) - len(line.lstrip())
    depth, quote, commas, opens, i = 0, None, [], [], 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
            opens.append(i)
        elif c in ")]}":
            depth -= 1
            if opens:
                opens.pop()
        elif c == "," and i < LINE_LIMIT - 1:
            commas.append((depth, i, list(opens)))
        elif c == "#":
            break
        i += 1
    inside = [d for d, _, _ in commas if d >= 1]
    if not inside:
        return [line]
    depth_wanted = min(inside)
    _, at, brackets = [c for c in commas if c[0] == depth_wanted][-1]
    rest = " " * (brackets[-1] + 1 if brackets else indent) + line[at + 1:].lstrip()
    if len(rest) >= len(line):
        return [line]
    return [line[:at + 1].rstrip(), *split_line(rest)]


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        marked = mark(path.read_text())
        path.write_text("\n".join(part for line in marked.split("\n") for part in split_line(line)))
        print(f"{path}: marked; now run makemigrations and bin/messages")


if __name__ == "__main__":
    main(sys.argv[1:])
