import time

from django.core.management.base import BaseCommand, CommandError

from jobs.cli import bounded_int
from jobs.display import job_display
from jobs.models import BackgroundJob, JobStatus
from jobs.registry import job_type_choices


class Command(BaseCommand):
    help = "List background jobs (newest first), optionally watching them live."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=JobStatus.values)
        parser.add_argument("--type", choices=[t for t, _ in job_type_choices()])
        parser.add_argument("--limit", type=bounded_int(1, 10_000, "--limit"), default=20)
        parser.add_argument("--watch", action="store_true", help="Refresh every 2 s until Ctrl-C.")

    def handle(self, *args, **o):
        if o["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        try:
            while True:
                lines = self.render(o)
                if o["watch"]:
                    self.stdout.write("\x1b[2J\x1b[H", ending="")
                self.stdout.write("\n".join(lines))
                if not o["watch"]:
                    return
                time.sleep(2)
        except KeyboardInterrupt:
            self.stdout.write("")

    def render(self, o) -> list[str]:
        qs = BackgroundJob.objects.select_related("started_by_user")
        if o["status"]:
            qs = qs.filter(status=o["status"])
        if o["type"]:
            qs = qs.filter(type=o["type"])
        jobs = list(qs[: o["limit"]])
        if not jobs:
            return ["No background jobs."]
        header = f"{'ID':>6}  {'TYPE':24} {'STATUS':10} {'PROGRESS':28} {'OK/FAILED':22} {'SPEED':>10} " \
                 f"{'ETA':>8} {'STARTED':19} {'HEARTBEAT':>10}  BY"
        lines = [header]
        for job in jobs:
            d = job_display(job)
            lines.append(
                f"{job.pk:>6}  {job.type:24} {d['status']:10} {d['progress']:28} {d['counts']:22} "
                f"{d['speed']:>10} {d['eta']:>8} {d['started']:19} {d['heartbeat']:>10}  {job.started_by_label}"
            )
            if job.error:
                lines.append(f"{'':8}error: {job.error.splitlines()[0][:150]}")
        return lines
