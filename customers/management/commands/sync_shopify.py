from django.core.management.base import BaseCommand, CommandError

from customers.services.sync import start_sync
from jobs.cli import run_in_foreground
from jobs.models import StartedBy


class Command(BaseCommand):
    help = ("Write matched customers' Nhanh total spent and loyalty tier to Shopify metafields: "
            "--all (default), --ids MAPPING_ID …, or --retry-failed. Manual syncs are forced unless --changed-only.")

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["customers", "products"])
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all", action="store_true")
        scope.add_argument("--ids", nargs="+", type=int, metavar="MAPPING_ID")
        scope.add_argument("--retry-failed", action="store_true")
        scope.add_argument("--changed-only", action="store_true",
                           help="Only customers whose total moved by the threshold (what the auto-sync does).")
        parser.add_argument("--force", action="store_true", help="Send even unchanged totals (default for "
                                                                 "--all/--ids/--retry-failed).")
        parser.add_argument("--create-missing", action="store_true",
                            help="Also create Shopify customers for unmatched Nhanh customers.")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args, **o):
        if o["kind"] == "products":
            raise CommandError("product sync is not available yet")
        scope = "ids" if o["ids"] else "failed" if o["retry_failed"] else "changed" if o["changed_only"] else "all"
        force = True if o["force"] else (False if o["changed_only"] else None)
        try:
            job = start_sync(scope=scope, ids=o["ids"], force=force, started_by=StartedBy.COMMAND,
                             start_now=not o["wait"], create_missing=o["create_missing"] or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not o["wait"]:
            self.stdout.write(f"Sync ({scope}) queued as job #{job.pk}.")
            return
        job = run_in_foreground(job, self.stdout)
        m = job.metadata
        self.stdout.write(f"Sent {m.get('sent', 0)}, unchanged {m.get('skipped', 0)}, failed "
                          f"{m.get('failed_customers', 0)}, created {m.get('created', 0)} "
                          f"in {m.get('calls', 0)} calls.")
        for error in m.get("errors", [])[:5]:
            self.stdout.write(f"  {error}")
