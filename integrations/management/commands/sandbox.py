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
        parser.add_argument("--only", default="", help="Comma-separated sandboxes to serve (default: all).")

    def handle(self, *args, **o):
        options = SandboxOptions(
            seed=o["seed"], customers=o["customers"], shopify_customers=o["shopify_customers"],
            overlap=o["overlap"], products=o["products"], rate_limit=not o["no_rate_limit"],
            latency_ms=o["latency_ms"],
        )
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
