from django.core.management.base import BaseCommand, CommandError

from jobs.claims import reset_pulls
from jobs.display import duration
from jobs.models import PullProgress
from jobs.pull_specs import pull_specs


class Command(BaseCommand):
    help = "List pulls and their progress, or reset them (--reset --system S [--type T])."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="Delete progress and checkpoints.")
        specs = pull_specs()
        parser.add_argument("--system", choices=sorted({s.system for s in specs}))
        parser.add_argument("--type", dest="kind", choices=sorted({s.kind for s in specs}))
        parser.add_argument("--id", dest="progress_id", help="Reset one progress id.")

    def handle(self, *args, **o):
        if o["reset"]:
            if not (o["system"] or o["progress_id"]):
                raise CommandError("--reset needs --system (and optionally --type) or --id")
            n = reset_pulls(system=o["system"], kind=o["kind"],
                            progress_ids=[o["progress_id"]] if o["progress_id"] else None)
            self.stdout.write(f"Reset {n} pull(s).")
            return
        qs = PullProgress.objects.all()
        if o["system"]:
            qs = qs.filter(system=o["system"])
        if o["kind"]:
            qs = qs.filter(kind=o["kind"])
        rows = list(qs.order_by("progress_id"))
        if not rows:
            self.stdout.write("No pulls recorded.")
            return
        for p in rows:
            state = {"running": "In Progress", "stale": "Stale (no heartbeat)", "completed": "Completed"}.get(
                p.state_label, p.state_label.capitalize()
            )
            resume = f", checkpoint {p.checkpoint}" if p.checkpoint and not p.is_completed else ""
            self.stdout.write(
                f"{p.progress_id}: {state} ({p.items_done:,} {p.kind}; heartbeat "
                f"{duration(p.heartbeat_age_seconds)} ago; job #{p.job_id or '-'}{resume})"
            )
