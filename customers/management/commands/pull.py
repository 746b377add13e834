from django.core.management.base import BaseCommand, CommandError

from customers.services.pulls import PullInputError, start_customer_pull
from jobs import services as jobs
from jobs.cli import run_in_foreground
from jobs.models import StartedBy


class Command(BaseCommand):
    help = ("Start a pull: `pull nhanh customers --mode all|new|limit|filtered [--type T --from D --to D]`, "
            "`pull shopify customers [--query Q]`. --wait runs it here with a progress bar.")

    def add_arguments(self, parser):
        parser.add_argument("system", choices=["nhanh", "shopify", "pancake"])
        parser.add_argument("kind", choices=["customers", "products"])
        parser.add_argument("--mode", choices=["all", "new", "limit", "filtered", "query", "incremental", "backfill"])
        parser.add_argument("--type", dest="customer_type", help="Nhanh customer type: 1 retail, 2 wholesale, 3 agent")
        parser.add_argument("--from", dest="date_from", help="Nhanh: last bought from (YYYY-MM-DD)")
        parser.add_argument("--to", dest="date_to", help="Nhanh: last bought to (YYYY-MM-DD)")
        parser.add_argument("--query", help="Shopify search query")
        parser.add_argument("--page-id", help="Pancake page id")
        parser.add_argument("--force-restart", action="store_true")
        parser.add_argument("--wait", action="store_true", help="Run here with a progress bar; exit 1 on failure.")

    def handle(self, *args, **o):
        if o["kind"] != "customers" or o["system"] == "pancake":
            raise CommandError(f"pulling {o['system']} {o['kind']} is not available yet")
        has_filter = bool(o["customer_type"] or o["date_from"] or o["date_to"])
        mode = o["mode"] or ("query" if o["query"] else "filtered" if has_filter else "all")
        try:
            started = start_customer_pull(
                o["system"], mode,
                filters={"type": o["customer_type"], "lastBoughtDateFrom": o["date_from"],
                         "lastBoughtDateTo": o["date_to"]},
                query=o["query"], force_restart=o["force_restart"], started_by=StartedBy.COMMAND,
                start_now=not o["wait"],
            )
        except (PullInputError, jobs.PullRefused) as exc:
            raise CommandError(str(exc)) from exc
        job = started.job
        resumed = " (resuming from its checkpoint)" if started.resumed else ""
        if not o["wait"]:
            self.stdout.write(f"Pull {started.progress_id} queued as job #{job.pk}{resumed}.")
            return
        self.stdout.write(f"Pull {started.progress_id} running as job #{job.pk}{resumed}…")
        job = run_in_foreground(job, self.stdout, already_ran=started.synchronous)
        m = job.metadata
        self.stdout.write(f"Done: {m.get('created', 0)} created, {m.get('updated', 0)} updated, "
                          f"{m.get('skipped', 0)} unchanged, {m.get('failed', 0)} failed.")
        for error in m.get("errors", [])[:5]:
            self.stdout.write(f"  failed row: {error}")
