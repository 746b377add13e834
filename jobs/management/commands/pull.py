from django.core.management.base import BaseCommand, CommandError

from jobs.cli import quiet_tracebacks, run_in_foreground
from jobs.errors import PullInputError, PullRefused
from jobs.models import StartedBy
from jobs.pull_specs import get_spec, pull_specs, start_pull
from jobs.results import result_of


def _filter_flags():
    """Every registered filter's flag once: flag → (dest, help)."""
    flags: dict[str, tuple[str, str]] = {}
    for spec in pull_specs():
        for f in spec.filters:
            if f.cli_flag and f.cli_flag not in flags:
                flags[f.cli_flag] = (f"filter_{f.cli_flag.lstrip('-').replace('-', '_')}", f.help)
    return flags


class Command(BaseCommand):
    help = ("Start a pull: `pull SYSTEM KIND [--mode M] [filters]`, e.g. `pull nhanh customers --mode all`, "
            "`pull shopify customers --query state:ENABLED`. --wait runs it here with a progress bar.")

    def add_arguments(self, parser):
        specs = pull_specs()
        parser.add_argument("system", help="Known: " + ", ".join(sorted({s.system for s in specs})))
        parser.add_argument("kind", help="Known pulls: " + "; ".join(f"{s.system} {s.kind}" for s in specs))
        modes = sorted({m.name for s in specs for m in s.modes})
        parser.add_argument("--mode", help="Modes: " + "; ".join(
            f"{s.system} {s.kind}: {'|'.join(m.name for m in s.modes)}" for s in specs) if modes else None)
        for flag, (dest, help_text) in _filter_flags().items():
            parser.add_argument(flag, dest=dest, help=help_text)
        parser.add_argument("--force-restart", action="store_true")
        parser.add_argument("--wait", action="store_true", help="Run here with a progress bar; exit 1 on failure.")

    @quiet_tracebacks
    def handle(self, *args, **o):
        try:
            spec = get_spec(o["system"], o["kind"])
            flags = _filter_flags()
            given = {f.name: o[flags[f.cli_flag][0]] for f in spec.filters
                     if f.cli_flag and o.get(flags[f.cli_flag][0]) is not None}
            others = [flag for flag, (dest, _) in flags.items()
                      if o.get(dest) is not None and flag not in {f.cli_flag for f in spec.filters}]
            if others:
                raise PullInputError(f"{', '.join(others)} do(es) not apply to {spec.system} {spec.kind} pulls")
            started = start_pull(spec.system, spec.kind, o["mode"], filters=given, force_restart=o["force_restart"],
                                 started_by=StartedBy.COMMAND, start_now=not o["wait"])
        except (PullInputError, PullRefused) as exc:
            raise CommandError(str(exc)) from exc
        job = started.job
        resumed = " (resuming from its checkpoint)" if started.resumed else ""
        if not o["wait"]:
            self.stdout.write(f"Pull {started.progress_id} queued as job #{job.pk}{resumed}.")
            return
        self.stdout.write(f"Pull {started.progress_id} running as job #{job.pk}{resumed}…")
        job = run_in_foreground(job, self.stdout, already_ran=started.synchronous)
        r = result_of(job)
        self.stdout.write(f"Done: {r.created} created, {r.updated} updated, {r.skipped} unchanged, "
                          f"{r.failed} failed.")
        for error in r.errors[:5]:
            self.stdout.write(f"  failed row: {error}")
