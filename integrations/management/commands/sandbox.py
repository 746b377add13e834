import argparse
import ipaddress
import signal

from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox.base import SandboxOptions
from integrations.sandbox.server import SandboxServer, build_apps


def _loopback(host: str) -> str:
    # The sandboxes accept their published test tokens and serve generated data: never on a public interface.
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address (use 127.0.0.1, ::1 or localhost)")


def _bounded(kind, low, high, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, not {text}")
        return value

    return parse


COUNT = _bounded(int, 0, 10_000_000, "a count")
SHARE = _bounded(float, 0.0, 1.0, "a share")


class Command(BaseCommand):
    help = "Serve the upstream sandboxes (Nhanh, Shopify, …) over HTTP on loopback until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--host", type=_loopback, default="127.0.0.1")
        parser.add_argument("--port", type=_bounded(int, 0, 65535, "--port"), default=8765)
        parser.add_argument("--customers", type=COUNT, default=2000, help="Nhanh customers (Shopify: same).")
        parser.add_argument("--shopify-customers", type=COUNT, default=None)
        parser.add_argument("--overlap", type=SHARE, default=0.5, help="Share of Shopify customers also in Nhanh.")
        parser.add_argument("--products", type=COUNT, default=300)
        parser.add_argument("--seed", type=_bounded(int, 0, 2**32 - 1, "--seed"), default=1)
        parser.add_argument("--latency-ms", type=_bounded(int, 0, 600_000, "--latency-ms"), default=0)
        parser.add_argument("--no-rate-limit", action="store_true", help="Switch the documented limits off.")
        parser.add_argument("--error-rate", type=SHARE, default=0.0, help="Share of requests answered 5xx.")
        parser.add_argument("--timeout-rate", type=SHARE, default=0.0, help="Share of requests left hanging.")
        parser.add_argument("--malformed-rate", type=SHARE, default=0.0, help="Share of rows corrupted.")
        parser.add_argument("--shopee-shops", default="",
                            help="Campaign counts of the Shopee shops, e.g. 35,335,917,10000.")
        parser.add_argument("--pancake-pages", type=_bounded(int, 0, 1000, "--pancake-pages"), default=2,
                            help="Pancake pages.")
        parser.add_argument("--pancake-customers", type=COUNT, default=500, help="Pancake customers per page.")
        parser.add_argument("--pancake-mutations-per-second", type=_bounded(float, 0.0, 100_000.0, "a rate"),
                            default=0.0, help="Pancake: inserts/updates of page customers per second while serving.")
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
        self.stdout.write(f"{options.customers} customers, {options.products} Nhanh products, seed {options.seed}; "
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
