from django.core.management.base import BaseCommand, CommandError

from customers.services.matching import start_auto_match
from jobs.cli import run_in_foreground
from jobs.models import StartedBy


class Command(BaseCommand):
    help = "Auto-match customers (Nhanh ↔ Shopify by phone). --dry-run reports without writing."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["customers", "products"])
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--wait", action="store_true", help="Run here and print the result.")

    def handle(self, *args, **o):
        if o["kind"] == "products":
            raise CommandError("product auto-match is not available yet")
        if not o["wait"] and not o["dry_run"]:
            job = start_auto_match(started_by=StartedBy.COMMAND)
            self.stdout.write(f"Auto-match queued as job #{job.pk}.")
            return
        job = start_auto_match(dry_run=o["dry_run"], started_by=StartedBy.COMMAND, run_now=True)
        job = run_in_foreground(job, self.stdout, already_ran=True)
        m = job.metadata
        prefix = "Would match" if o["dry_run"] else "Matched"
        self.stdout.write(f"{prefix} {m['matched']}; {m['ambiguous']} ambiguous, {m['skipped_no_phone']} without "
                          f"a phone, {m['no_candidate']} without a candidate, {m['already_mapped']} already mapped "
                          f"(SQL {m['sql_seconds']} s).")
        for a in m.get("ambiguous_examples", [])[:10]:
            others = ", ".join(map(str, a["other_nhanh_ids"]))
            rivals = f"; also claimed by Nhanh {others}" if others else ""
            self.stdout.write(f"  ambiguous: Nhanh {a['nhanh_id']} ({', '.join(a['phones'])}) → Shopify "
                              f"{', '.join(map(str, a['shopify_ids']))}{rivals}")
