"""Shared by management commands that run a job in the foreground (``--wait``): a progress bar fed by
the job's own row, so the command shows exactly what the dashboard shows."""

from __future__ import annotations

import threading
import time

from django.core.management.base import CommandError
from django.db import connections
from tqdm import tqdm

from .models import BackgroundJob, JobStatus
from .services import cancel_job, run_job


def run_in_foreground(job: BackgroundJob, stdout, *, already_ran: bool = False) -> BackgroundJob:
    """Run ``job`` in this process (a thread) while drawing its progress; Ctrl-C cancels it.
    Raises CommandError when the job did not complete, so the command exits non-zero."""
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
