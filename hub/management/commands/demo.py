import importlib
import ipaddress
import secrets
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config.schedules import install_schedules
from integrations.models import Connection, System
from jobs.errors import PullCapReached, PullRefused
from jobs.pull_specs import pull_specs, start_pull
from jobs.tasks import start_pull_when_free_task

SANDBOX_CONNECTIONS = {
    # system: (module holding the sandbox's accepted credentials, connection fields)
    System.NHANH: ("integrations.nhanh.sandbox", lambda m: {
        "app_id": m.SANDBOX_APP_ID, "business_id": m.SANDBOX_BUSINESS_ID, "access_token": m.SANDBOX_ACCESS_TOKEN,
        "secret_key": m.SANDBOX_SECRET_KEY, "webhook_verify_token": m.SANDBOX_WEBHOOK_VERIFY_TOKEN,
        "api_version": "3.0", "requests_per_window": 150, "window_seconds": 30,
    }),
    # As a shop set up today would be: a Dev Dashboard app's client id and secret (tokens last ~24 h).
    System.SHOPIFY: ("integrations.shopify.sandbox", lambda m: {
        "client_id": m.SANDBOX_CLIENT_ID, "client_secret": m.SANDBOX_CLIENT_SECRET, "access_token": "",
        "api_version": "2026-10",
    }),
    System.PANCAKE: ("integrations.pancake.sandbox", lambda m: {"requests_per_window": 8, "window_seconds": 1}),
}


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def real_connections() -> list[Connection]:
    """Connections that point at a real upstream: not marked sandbox, or not on this machine."""
    return [c for c in Connection.objects.order_by("system") if not c.is_sandbox or not _is_local(c.base_url)]


class Command(BaseCommand):
    help = ("Set up a demo: migrate, create the admin user (prints the login), point every connection at "
            "the local sandboxes and install the beat schedules.")

    def add_arguments(self, parser):
        parser.add_argument("--sandbox-url", default="http://127.0.0.1:8765")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--start-jobs", action="store_true",
                            help="Queue a self-test job and first pulls so the dashboard has something to show.")
        parser.add_argument("--after-sandbox", action="store_true",
                            help="Only wait for the sandbox to answer, then add what needs it running (Shopee "
                                 "shops are authorized through it). bin/demo runs this before the web server.")
        parser.add_argument("--force", action="store_true",
                            help="Run even on a database with real (non-sandbox) connections: they are repointed at "
                                 "the sandboxes and the admin user's password is reset.")

    def handle(self, *args, **o):
        if o["after_sandbox"]:
            if real_connections() and not o["force"]:
                raise CommandError("this database has real connections: no sandbox pages or shops added to it")
            self.wait_for_sandbox(o["sandbox_url"])
            self.add_pancake_pages(o["sandbox_url"])
            self.add_shopee_shops(o["sandbox_url"])
            return
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        # The demo resets the admin's password, makes it superuser and points every connection at the sandbox:
        # on a production database that would lock staff out and cut the real upstreams off.
        real = real_connections()
        if real and not o["force"]:
            raise CommandError(
                "this database has real connections (" + ", ".join(f"{c.system} → {urlsplit(c.base_url).hostname}"
                                                                  for c in real)
                + "): the demo would repoint them at the sandboxes and reset the admin password; use --force "
                  "to do it anyway")
        password = secrets.token_urlsafe(9)
        user, created = get_user_model().objects.get_or_create(
            username=o["username"], defaults={"email": f"{o['username']}@example.com"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        for system, (module_name, fields) in SANDBOX_CONNECTIONS.items():
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
            Connection.objects.update_or_create(
                system=system,
                defaults={"base_url": f"{o['sandbox_url'].rstrip('/')}/{system}", "is_sandbox": True,
                          **fields(module)},
            )
            self.stdout.write(f"Connection {system} → {o['sandbox_url']}/{system} (sandbox)")
        self.add_pancake_pages(o["sandbox_url"])
        self.add_shopee_shops(o["sandbox_url"])
        self.map_sandbox_depots()
        for line in install_schedules():
            self.stdout.write(f"Schedule {line}")
        if o["start_jobs"]:
            self.start_demo_jobs()
        self.stdout.write(self.style.SUCCESS(
            f"\nAdmin: http://127.0.0.1:8000/admin/  login: {o['username']}  password: {password}\n"
        ))

    def add_pancake_pages(self, sandbox_url: str) -> None:
        """The sandbox's pages, with its user token (each page token is generated from it on first use). The
        sandbox usually starts after this command: then its default pages are added."""
        import requests

        from integrations.pancake import sandbox
        from integrations.sandbox.base import SandboxOptions
        from pancake.models import PancakePage

        try:
            page_ids = requests.get(f"{sandbox_url.rstrip('/')}/_sandbox/", timeout=2).json()["pancake"]["pages"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            page_ids = sandbox.page_ids(SandboxOptions().pancake_pages)
        for k, page_id in enumerate(page_ids):
            PancakePage.objects.update_or_create(page_id=page_id, defaults={
                "name": f"FolkForm Page {k + 1} (sandbox)", "user_access_token": sandbox.SANDBOX_USER_TOKEN,
                "enabled": True})
        self.stdout.write(f"Pancake pages {', '.join(page_ids)} (sandbox)")

    def map_sandbox_depots(self) -> None:
        """Every sandbox Nhanh depot feeds one of the sandbox's Shopify locations (each location fed, one by two
        depots), so a product sync has somewhere to send stock from the first pull on."""
        from integrations.sandbox.catalog_population import DEFAULT_DEPOT_LOCATIONS, DEPOTS, LOCATIONS
        from products.services.stock import install_depot_map

        for line in install_depot_map(DEPOTS, LOCATIONS, DEFAULT_DEPOT_LOCATIONS):
            self.stdout.write(line)

    def wait_for_sandbox(self, sandbox_url: str, seconds: float = 90) -> None:
        import time

        import requests

        deadline = time.monotonic() + seconds
        while True:
            try:
                requests.get(f"{sandbox_url.rstrip('/')}/_sandbox/", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise CommandError(f"the sandbox at {sandbox_url} did not answer in {seconds:.0f} s") from None
                time.sleep(0.5)

    def add_shopee_shops(self, sandbox_url: str) -> None:
        """Shopee shops are authorized through the sandbox (a one-time code, then the token exchange), so they
        are added once it answers (bin/demo: ``demo --after-sandbox``)."""
        import requests

        from ads.services import setup_sandbox_shops

        try:
            lines = setup_sandbox_shops(sandbox_url)
        except requests.RequestException:
            self.stdout.write("Shopee shops: added once the sandbox is up (demo --after-sandbox).")
            return
        for line in lines:
            self.stdout.write(line)

    def start_demo_jobs(self):
        from jobs.models import StartedBy
        from jobs.selftest import start_selftest

        job = start_selftest(params={"items": 200, "batch": 10, "delay": 0.2}, started_by=StartedBy.COMMAND)
        self.stdout.write(f"Queued self-test job #{job.pk}.")
        for spec in pull_specs():
            if spec.demo_mode is None:
                continue
            try:
                started = start_pull(spec.system, spec.kind, spec.demo_mode, started_by=StartedBy.COMMAND)
            except PullCapReached:
                # More demo pulls than the cap allows at once: the worker starts this one when a slot frees.
                start_pull_when_free_task.apply_async((spec.system, spec.kind, spec.demo_mode), countdown=10)
                self.stdout.write(f"{spec.label}: queued to start when one of the running pulls finishes.")
            except PullRefused as exc:
                self.stdout.write(f"{spec.label}: not started: {exc}")
            else:
                self.stdout.write(f"Queued {spec.label.lower()}, job #{started.job.pk}.")
