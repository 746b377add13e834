#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    # Commands print English whatever the staff's language (LANGUAGE_CODE, Vietnamese by default); the web
    # server's requests still get theirs from hub.middleware.LocaleMiddleware.
    _english_commands()
    execute_from_command_line(sys.argv)


def _english_commands():
    try:
        import django
        from django.utils import translation

        django.setup()
        translation.activate("en")
    except Exception:  # noqa: BLE001,S110 - bad settings: let the command itself report them
        pass


if __name__ == "__main__":
    main()
