"""Shared by management commands that run a job in the foreground (``--wait``): a progress bar fed by
the job's own row, so the command shows exactly what the dashboard shows."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import threading
import time

from django.core.management.base import CommandError
from django.db import connections
from tqdm import tqdm

from .models import BackgroundJob, JobStatus
from .services import cancel_job, run_job


def _is_console(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and getattr(handler, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__))


class _ConsoleWithoutTracebacks(logging.Handler):
    """Stands in for a console handler during the run: hands it each record stripped of its traceback."""

    def __init__(self, inner: logging.Handler):
        super().__init__(inner.level)
        self.inner = inner

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = record.exc_text = record.stack_info = None
        self.inner.handle(record)


@contextlib.contextmanager
def console_without_tracebacks(verbosity: int = 1):
    """While a ``--wait`` job runs, console log handlers print a failure's message but not its traceback: the
    command ends with one line, as the README promises. Log files and other handlers keep the traceback;
    ``--verbosity 2`` shows it on the console too."""
    if verbosity >= 2:
        yield
        return
    swapped: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", [])):
            if _is_console(handler):
                wrapper = _ConsoleWithoutTracebacks(handler)
                logger.removeHandler(handler)
                logger.addHandler(wrapper)
                swapped.append((logger, handler, wrapper))
    try:
        yield
    finally:
        for logger, handler, wrapper in swapped:
            logger.removeHandler(wrapper)
            logger.addHandler(handler)


def run_in_foreground(job: BackgroundJob, stdout, *, already_ran: bool = False,
                      verbosity: int | None = None) -> BackgroundJob:
    """Run ``job`` in this process (a thread) while drawing its progress; Ctrl-C cancels it.
    Raises CommandError when the job did not complete, so the command exits non-zero. With ``verbosity``
    (below 2), console log handlers show no traceback meanwhile; commands get that from ``@quiet_tracebacks``."""
    if verbosity is None:
        return _run_in_foreground(job, stdout, already_ran=already_ran)
    with console_without_tracebacks(verbosity):
        return _run_in_foreground(job, stdout, already_ran=already_ran)


def _run_in_foreground(job: BackgroundJob, stdout, *, already_ran: bool) -> BackgroundJob:
    worker = None
    if not already_ran:
        def target():
            try:
                run_job(job.pk)
            finally:
                connections.close_all()

        worker = threading.Thread(target=target, name=f"job-{job.pk}", daemon=True)
        worker.start()
    bar = tqdm(total=None, unit="rows", desc=f"job #{job.pk} {job.type}", file=stdout, dynamic_ncols=True)
    try:
        while True:
            job.refresh_from_db()
            if job.total and bar.total != job.total:
                bar.total = job.total
            bar.n = job.processed
            bar.set_postfix(ok=job.successful, failed=job.failed, refresh=False)
            bar.refresh()
            if not job.is_active and (worker is None or not worker.is_alive()):
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        cancel_job(job)
        stdout.write("\nCancel requested; waiting for the current batch to finish…\n")
        if worker is not None:
            worker.join()
        job.refresh_from_db()
    finally:
        bar.close()
    if job.status != JobStatus.COMPLETED:
        reason = job.error.split("\n", 1)[0] if job.error else job.get_status_display().lower()
        raise CommandError(f"job #{job.pk} {job.get_status_display().lower()}: {reason}")
    return job


def quiet_tracebacks(handle):
    """For a command's ``handle``: no traceback on the console while it runs (see console_without_tracebacks);
    covers jobs that run inside the start call (synchronous pulls, dry runs) as well as ``--wait``."""

    @functools.wraps(handle)
    def wrapped(self, *args, **options):
        with console_without_tracebacks(int(options.get("verbosity", 1))):
            return handle(self, *args, **options)

    return wrapped


def bounded_int(low: int, high: int, what: str = "a number"):
    """An argparse ``type``: an integer within [low, high], else a one-line usage error (never an overflow
    further down, e.g. SQLite's at 2**63)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, not {text}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


# A database id (a bigint primary key).
record_id = bounded_int(1, 2**63 - 1, "an id")
