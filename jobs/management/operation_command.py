"""The shape of ``automatch`` and ``sync_shopify``: KIND, the registered kinds' arguments, --wait."""

from django.core.management.base import BaseCommand, CommandError

from jobs.cli import quiet_tracebacks, run_in_foreground
from jobs.operations import get_operation, operations


class OperationCommand(BaseCommand):
    operation = ""

    def add_arguments(self, parser):
        parser.add_argument("kind", help="What to run it on: " + ", ".join(o.kind for o in operations(self.operation)))
        parser.add_argument("--wait", action="store_true", help="Run here with a progress bar; exit 1 on failure.")
        seen: set[str] = set()
        for op in operations(self.operation):
            for argument in op.arguments:
                if seen.isdisjoint(argument.flags):
                    parser.add_argument(*argument.flags, **argument.options)
                    seen.update(argument.flags)

    @quiet_tracebacks
    def handle(self, *args, **o):
        try:
            op = get_operation(self.operation, o["kind"])
            started = op.start(o, wait=o["wait"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not o["wait"] and not started.already_ran:
            self.stdout.write(started.queued_message or f"Queued as job #{started.job.pk}.")
            return
        job = run_in_foreground(started.job, self.stdout, already_ran=started.already_ran)
        for line in op.report(job, o):
            self.stdout.write(line)
