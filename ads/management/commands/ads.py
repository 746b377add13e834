from django.core.management.base import BaseCommand, CommandError

from ads import services
from ads.models import Shop, Stage, SyncProgress
from jobs.cli import quiet_tracebacks, run_in_foreground
from jobs.models import StartedBy

ACTIONS = ["enqueue", "process", "status", "cleanup", "reset", "sync", "retry", "budgets"]


class Command(BaseCommand):
    help = ("Shopee ads queue operations: `ads enqueue [SHOP_ID…]` (all enabled shops without one), `ads process`, "
            "`ads status [SHOP_ID]`, `ads cleanup` (stuck runs + old queue rows), `ads reset SHOP_ID`, "
            "`ads sync SHOP_ID --wait` (one shop's full sync here, with a progress bar), `ads retry SHOP_ID`, "
            "`ads budgets` (one budget-scheduler tick).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("shop_ids", nargs="*", type=int, metavar="SHOP_ID")
        parser.add_argument("--backfill", action="store_true", help="enqueue/sync: 7 days of results.")
        parser.add_argument("--wait", action="store_true", help="sync/retry: run here; exit 1 unless completed.")

    @quiet_tracebacks
    def handle(self, *args, **o):
        action, ids = o["action"], o["shop_ids"]
        shops = self._shops(ids)
        if action in ("reset", "sync", "retry") and len(shops) != 1:
            raise CommandError(f"`ads {action}` takes exactly one SHOP_ID")
        try:
            getattr(self, f"do_{action}")(shops, o)
        except services.RunRefused as exc:
            raise CommandError(str(exc)) from exc

    def _shops(self, ids: list[int]) -> list[Shop]:
        shops = list(Shop.objects.filter(shop_id__in=ids))
        missing = set(ids) - {s.shop_id for s in shops}
        if missing:
            raise CommandError(f"no shop with id {', '.join(map(str, sorted(missing)))}")
        return shops

    def do_enqueue(self, shops, o):
        sync_type = "backfill" if o["backfill"] else "realtime"
        if not shops:
            self.stdout.write(f"{services.enqueue_all(sync_type)} shop(s) queued ({sync_type}).")
            return
        for shop in shops:
            entry = services.enqueue_shop(shop, sync_type=sync_type, priority=services.sync.MANUAL_PRIORITY)
            self.stdout.write(f"shop {shop.shop_id}: " + (f"queued (entry #{entry.pk})" if entry else "already queued"))

    def do_process(self, shops, o):
        started = services.process_queue(started_by=StartedBy.COMMAND)
        self.stdout.write(f"{len(started)} run(s) started" + (f": entries {started}" if started else "."))

    def do_status(self, shops, o):
        wanted = {s.shop_id for s in shops}
        rows = [r for r in services.status_rows() if not wanted or r["shop_id"] in wanted]
        self.stdout.write(f"{'shop':>12} {'stage':20} {'chunks':>9} {'%':>6} {'synced':>13} {'min':>6} "
                          f"{'failed':>6}  name")
        for r in rows:
            minutes = "—" if r["minutes_since_last_chunk"] is None else f"{r['minutes_since_last_chunk']:.1f}"
            stage = r["stage"] + (" STUCK" if r["stuck"] else "")
            self.stdout.write(f"{r['shop_id']:>12} {stage:20} {r['chunks']:>9} {r['progress_percent']:>6.1f} "
                              f"{r['synced']:>13} {minutes:>6} {r['failed_chunks']:>6}  {r['name']}")
            if r["error"]:
                self.stdout.write(f"{'':>12} {r['error']}")

    def do_cleanup(self, shops, o):
        stuck = services.cleanup_stuck()
        dropped = services.cleanup_queue()
        self.stdout.write(f"{len(stuck)} stuck shop(s) failed and re-queued{': ' + str(stuck) if stuck else ''}; "
                          f"{dropped} old queue row(s) removed.")

    def do_reset(self, shops, o):
        result = services.reset_shop(shops[0])
        self.stdout.write(f"shop {shops[0].shop_id} reset to idle: {result['chunks_failed']} open chunk(s) "
                          f"stopped, {result['pending_removed']} pending entr(ies) removed.")

    def do_sync(self, shops, o):
        shop = shops[0]
        sync_type = "backfill" if o["backfill"] else "realtime"
        job = services.start_shop_sync(shop, sync_type=sync_type, started_by=StartedBy.COMMAND, foreground=o["wait"])
        if not o["wait"]:
            self.stdout.write(f"shop {shop.shop_id}: sync queued as job #{job.pk} (workers run it).")
            return
        self.stdout.write(f"shop {shop.shop_id}: syncing as job #{job.pk}…")
        run_in_foreground(job, self.stdout)  # CommandError (exit 1) unless the job completed
        self._report(shop)

    def do_retry(self, shops, o):
        job = services.retry_failed_chunks(shops[0], started_by=StartedBy.COMMAND, foreground=o["wait"])
        if o["wait"]:
            self._report(shops[0])
        else:
            self.stdout.write(f"shop {shops[0].shop_id}: failed chunks retried as job #{job.pk}.")

    def _report(self, shop):
        p = SyncProgress.objects.get(shop=shop)
        self.stdout.write(f"shop {shop.shop_id}: {p.get_stage_display()}: {p.synced_campaigns:,}/"
                          f"{p.total_campaigns:,} campaigns in {p.total_chunks} chunk(s).")
        if p.stage != Stage.COMPLETED:
            raise CommandError(f"shop {shop.shop_id} ended {p.stage}: {p.error_message}")

    def do_budgets(self, shops, o):
        self.stdout.write(str(services.run_budget_scheduler()))
