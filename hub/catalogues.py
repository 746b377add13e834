"""The Vietnamese catalogues (locale/vi/LC_MESSAGES/django.po and djangojs.po): update them from the code,
compile them, and check them. ``bin/messages`` runs ``python -m hub.catalogues update``; tests/test_i18n.py
uses the same extraction to fail on a string of ours that the catalogue lacks.

Compiling uses polib (pure Python, a dev dependency), so no GNU gettext is needed for that; the compiled .mo
files are committed, and a test checks they match the .po files. Extracting (makemessages) needs GNU
gettext's xgettext and msgmerge, as Django's makemessages always does.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOCALE_DIR = BASE_DIR / "locale"
LANGUAGES = ("vi",)
DOMAINS = ("django", "djangojs")
# Not ours, or not shown to staff (tests, benchmarks, build output). Management-command output stays English.
IGNORE = [".venv", "var", "tests", "bench", "locale", ".git", "*.egg-info", "node_modules"]
SOURCE_SUFFIXES = {".py", ".html", ".txt", ".js"}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[-#0 +]*\d*(?:\.\d+)?[sdfr]|%[sdfr]|\{[a-z_]*\}")


def po_path(language: str, domain: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"


def _makemessages(domain: str, languages=LANGUAGES) -> None:
    from django.core.management import call_command

    # File names without line numbers: a catalogue that changes only where strings change merges cleanly.
    call_command("makemessages", locale=list(languages), domain=domain, ignore_patterns=IGNORE,
                 no_obsolete=True, add_location="file", verbosity=0,
                 **({"extensions": ["js"]} if domain == "djangojs" else {}))


def update() -> None:
    """makemessages for every language and domain (keeps translations, marks changed ones fuzzy), then compile."""
    cwd = os.getcwd()
    os.chdir(BASE_DIR)
    try:
        for domain in DOMAINS:
            _makemessages(domain)
    finally:
        os.chdir(cwd)
    compile_all()


def compile_all() -> list[Path]:
    """Compile every .po next to itself (.mo), with polib: no GNU gettext needed."""
    import polib

    written = []
    for po_file in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        polib.pofile(str(po_file)).save_as_mofile(str(po_file.with_suffix(".mo")))
        written.append(po_file.with_suffix(".mo"))
    return written


def problems(language: str = "vi") -> list[str]:
    """What is wrong with a catalogue: untranslated or fuzzy entries, placeholders that differ from the msgid."""
    import polib

    found = []
    for domain in DOMAINS:
        po = polib.pofile(str(po_path(language, domain)))
        for e in po:
            if e.obsolete:
                continue
            where = f"{domain}.po: {e.msgid!r}"
            if "fuzzy" in e.flags:
                found.append(f"{where} is fuzzy")
            elif not e.msgstr.strip():
                found.append(f"{where} is not translated")
            elif sorted(PLACEHOLDER.findall(e.msgid)) != sorted(PLACEHOLDER.findall(e.msgstr)):
                found.append(f"{where}: placeholders differ in {e.msgstr!r}")
    return found


@contextmanager
def _source_copy():
    """Our sources copied to a temporary directory with no locale/ of its own, so makemessages writes a fresh
    catalogue there instead of merging into ours."""
    with tempfile.TemporaryDirectory(prefix="shopbridge-messages-") as tmp:
        root = Path(tmp)
        for path in BASE_DIR.rglob("*"):
            rel = path.relative_to(BASE_DIR)
            if any(part in IGNORE or part.endswith(".egg-info") for part in rel.parts):
                continue
            if path.is_file() and path.suffix in SOURCE_SUFFIXES:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, root / rel)
        (root / "locale").mkdir()
        yield root


def extracted_msgids(domain: str) -> set[str]:
    """Every msgid of ``domain`` our code marks today (makemessages into a temporary copy)."""
    import polib
    from django.test import override_settings

    cwd = os.getcwd()
    with _source_copy() as root:
        os.chdir(root)
        try:
            with override_settings(LOCALE_PATHS=[root / "locale"]):
                _makemessages(domain, languages=("vi",))
        finally:
            os.chdir(cwd)
        po_file = root / "locale" / "vi" / "LC_MESSAGES" / f"{domain}.po"
        return {e.msgid for e in polib.pofile(str(po_file))} if po_file.exists() else set()


def main(argv: list[str]) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    command = argv[1] if len(argv) > 1 else "update"
    if command == "update":
        update()
    elif command == "compile":
        compile_all()
    elif command != "check":
        print("usage: python -m hub.catalogues [update|compile|check]", file=sys.stderr)
        return 2
    found = problems()
    for line in found:
        print(line)
    total = sum(len(__import__("polib").pofile(str(po_path("vi", d)))) for d in DOMAINS)
    print(f"vi: {total} strings, {len(found)} to translate or fix"
          + (" (edit locale/vi/LC_MESSAGES/*.po, then run bin/messages again)" if found else ""))
    return 1 if found and command == "check" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
