import signal

from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox.base import SandboxOptions
from integrations.sandbox.server import SandboxServer, build_apps


class Command(BaseCommand):
    help = "Serve the upstream sandboxes (Nhanh, Shopify, …) over HTTP on loopback until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--customers", type=int, default=2000, help="Nhanh customers (Shopify: same).")
        parser.add_argument("--shopify-customers", type=int, default=None)
        parser.add_argument("--overlap", type=float, default=0.5, help="Share of Shopify customers also in Nhanh.")
        parser.add_argument("--products", type=int, default=300)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--no-rate-limit", action="store_true", help="Switch the documented limits off.")
        parser.add_argument("--error-rate", type=float, default=0.0, help="Share of requests answered 5xx.")
        parser.add_argument("--timeout-rate", type=float, default=0.0, help="Share of requests left hanging.")
        parser.add_argument("--malformed-rate", type=float, default=0.0, help="Share of rows corrupted.")
        parser.add_argument("--shopee-shops", default="",
                            help="Campaign counts of the Shopee shops, e.g. 35,335,917,10000.")
        parser.add_argument("--pancake-pages", type=int, default=2, help="Pancake pages.")
        parser.add_argument("--pancake-customers", type=int, default=500, help="Pancake customers per page.")
        parser.add_argument("--pancake-mutations-per-second", type=float, default=0.0,
                            help="Pancake: inserts/updates of page customers per second while serving.")
        parser.add_argument("--only", default="", help="Comma-separated sandboxes to serve (default: all).")
        parser.add_argument("--nhanh-cursor", choices=("object", "array", "mixed"), default="object",
                            help="Shape of Nhanh's paginator.next (documented as array or object; mixed: "
                                 "changes from page to page). Also at run time: POST /_sandbox/nhanh/faults.")
        parser.add_argument("--shopify-token-ttl", type=float, default=86_400.0,
                            help="Seconds a client-credentials token lasts (Shopify: ~24 h).")
        parser.add_argument("--shopify-bulk-rows-per-second", type=float, default=2000.0,
                            help="Objects a bulk operation writes per second (0: as fast as possible).")

    def handle(self, *args, **o):
        options = SandboxOptions(
            seed=o["seed"], customers=o["customers"], shopify_customers=o["shopify_customers"],
            overlap=o["overlap"], products=o["products"], rate_limit=not o["no_rate_limit"],
            latency_ms=o["latency_ms"], nhanh_cursor=o["nhanh_cursor"], shopify_token_ttl=o["shopify_token_ttl"],
            shopify_bulk_rows_per_second=o["shopify_bulk_rows_per_second"],
            shopee_shops=_counts(o["shopee_shops"]),
            pancake_pages=o["pancake_pages"], pancake_customers=o["pancake_customers"],
            pancake_mutations_per_second=o["pancake_mutations_per_second"],
        )
        if o["shopify_token_ttl"] <= 0 or o["shopify_bulk_rows_per_second"] < 0:
            raise CommandError("--shopify-token-ttl must be > 0 and --shopify-bulk-rows-per-second ≥ 0")
        only = [n.strip() for n in o["only"].split(",") if n.strip()] or None
        apps = build_apps(options, only)
        if not apps:
            raise CommandError("no sandbox to serve")
        for app in apps.values():
            app.faults.server_error_rate = o["error_rate"]
            app.faults.timeout_rate = o["timeout_rate"]
            app.faults.malformed_rate = o["malformed_rate"]
        try:
            server = SandboxServer(apps, o["host"], o["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {o['host']}:{o['port']}: {exc}") from exc
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        for name in apps:
            self.stdout.write(f"sandbox {name:8s} {server.url_for(name)}")
        self.stdout.write(f"{options.customers} customers, seed {options.seed}; "
                          f"rate limits {'on' if options.rate_limit else 'off'}. Ctrl-C stops.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def _counts(text: str) -> list[int] | None:
    if not text.strip():
        return None
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"--shopee-shops takes comma-separated campaign counts, not {text!r}") from None
    if any(c < 0 for c in counts):
        raise CommandError("--shopee-shops: campaign counts cannot be negative")
    return counts
