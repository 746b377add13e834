"""One HTTP server on loopback that serves every upstream sandbox under its own prefix:

    http://127.0.0.1:8765/nhanh/v3.0/customer/list
    http://127.0.0.1:8765/shopify/admin/api/2026-10/graphql.json
    http://127.0.0.1:8765/_sandbox/               (GET: status of every sandbox, with requests_served and
                                                   rate_limited: answers refused for rate or lock)
    http://127.0.0.1:8765/_sandbox/<name>/faults  (POST JSON: change injected faults at run time)
    http://127.0.0.1:8765/_sandbox/<name>/<action> (POST JSON: sandbox-specific test hooks)

Clients are pointed at ``http://host:port/<name>`` exactly as they would be at the real host.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import random
import threading
import time
from dataclasses import fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .base import SandboxApp, SandboxOptions, SandboxRequest, SandboxResponse
from .population import Population

log = logging.getLogger(__name__)

# name → "module:Class". Upstreams whose module is not written yet are skipped.
SANDBOX_APPS = {
    "nhanh": "integrations.nhanh.sandbox:NhanhSandbox",
    "shopify": "integrations.shopify.sandbox:ShopifySandbox",
    "pancake": "integrations.pancake.sandbox:PancakeSandbox",
    "shopee": "integrations.shopee.sandbox:ShopeeSandbox",
}


def available_apps() -> dict[str, type[SandboxApp]]:
    found = {}
    for name, target in SANDBOX_APPS.items():
        module_name, cls_name = target.split(":")
        if importlib.util.find_spec(module_name.rsplit(".", 1)[0]) is None:
            continue
        if importlib.util.find_spec(module_name) is None:
            continue
        found[name] = getattr(importlib.import_module(module_name), cls_name)
    return found


def build_apps(options: SandboxOptions, only: list[str] | None = None,
               extra: dict[str, type[SandboxApp]] | None = None) -> dict[str, SandboxApp]:
    population = Population(seed=options.seed, nhanh_customers=options.customers,
                            shopify_customers=options.shopify_customers, overlap=options.overlap)
    classes = {**available_apps(), **(extra or {})}
    return {name: cls(options, population) for name, cls in classes.items() if not only or name in only}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per thread
    # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, fmt, *args):  # the default writes every request to stderr
        log.debug("sandbox %s - " + fmt, self.address_string(), *args)

    def do_GET(self):  # noqa: N802
        self._dispatch()

    def do_POST(self):  # noqa: N802
        self._dispatch()

    def do_PUT(self):  # noqa: N802
        self._dispatch()

    def do_DELETE(self):  # noqa: N802
        self._dispatch()

    def _dispatch(self):
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = split.path.split("/", 2)  # "", name, rest
        name = parts[1] if len(parts) > 1 else ""
        rest = "/" + (parts[2] if len(parts) > 2 else "")
        request = SandboxRequest(
            method=self.command, path=rest, query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()}, body=body,
        )
        try:
            if name == "_sandbox":
                response = self.server.control(request)
            elif name in self.server.apps:
                response = self.server.serve_app(self.server.apps[name], request)
                if response is None:  # injected timeout: hang up without answering
                    self.close_connection = True
                    return
            else:
                response = SandboxResponse(404, f"<html><body>404 Not Found: {split.path}</body></html>",
                                           content_type="text/html")
        except Exception as exc:  # a bug in a sandbox must show as a 500, not a dropped connection
            log.exception("sandbox error on %s", split.path)
            response = SandboxResponse(500, {"error": f"sandbox bug: {exc}"})
        payload = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, apps: dict[str, SandboxApp], host: str = "127.0.0.1", port: int = 8765):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the sandbox serves loopback only")
        self.apps = apps
        self._rng = random.Random(0)
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def start_in_thread(self) -> SandboxServer:
        # A short poll interval: stop() returns at once instead of after up to half a second.
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # --- request path -------------------------------------------------------------------------
    def serve_app(self, app: SandboxApp, request: SandboxRequest) -> SandboxResponse | None:
        response = self._answer(app, request)
        app.count_answer(response)
        return response

    def _answer(self, app: SandboxApp, request: SandboxRequest) -> SandboxResponse | None:
        f = app.faults
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000)
        if f.timeout_next > 0 or (f.timeout_rate and self._rng.random() < f.timeout_rate):
            f.timeout_next = max(f.timeout_next - 1, 0)
            time.sleep(f.timeout_seconds)
            return None
        if f.server_error_next > 0 or (f.server_error_rate and self._rng.random() < f.server_error_rate):
            f.server_error_next = max(f.server_error_next - 1, 0)
            return app.server_error_response(request, f.server_error_status)
        if f.rate_limit_next > 0:
            f.rate_limit_next -= 1
            return app.rate_limited_response(request, 1.0)
        if f.rate_limit_enabled and app.limiter is not None:
            key = app.rate_limit_key(request)
            if key is not None:
                wait = app.limiter.hit(key)
                if wait is not None:
                    return app.rate_limited_response(request, wait)
        return app.handle(request)

    def control(self, request: SandboxRequest) -> SandboxResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return SandboxResponse(200, {name: {**app.status(), **app.counters()} for name, app in self.apps.items()})
        name, action = parts[0], (parts[1] if len(parts) > 1 else "status")
        app = self.apps.get(name)
        if app is None:
            return SandboxResponse(404, {"error": f"no sandbox {name}"})
        if action == "status":
            return SandboxResponse(200, {**app.status(), **app.counters()})
        try:
            payload = request.json() if request.body else {}
        except ValueError:  # malformed JSON (or not UTF-8): the caller's mistake, not a sandbox bug
            return SandboxResponse(400, {"error": "the body is not valid JSON"})
        if isinstance(payload, dict):  # GET hooks take their arguments from the query (?page_id=P)
            payload = {**{k: v[0] for k, v in request.query.items()}, **payload}
        if action == "faults":
            if not isinstance(payload, dict):
                return SandboxResponse(400, {"error": "fault settings are a JSON object"})
            allowed = {f.name for f in fields(app.faults)}
            unknown = set(payload) - allowed
            if unknown:
                return SandboxResponse(400, {"error": f"unknown fault settings: {sorted(unknown)}"})
            changed = replace(app.faults, **payload)
            try:
                changed.check()
            except ValueError as exc:
                return SandboxResponse(400, {"error": str(exc)})
            for key, value in payload.items():  # on the live object: counters like *_next keep counting
                setattr(app.faults, key, value)
            return SandboxResponse(200, app.faults.as_dict())
        if action == "reset_faults":
            app.faults = app.default_faults()
            return SandboxResponse(200, app.faults.as_dict())
        try:
            result = app.control(action, payload)
            # A hook may answer with its own response (the truth endpoints return a bare list).
            return result if isinstance(result, SandboxResponse) else SandboxResponse(200, {"result": result})
        except KeyError:
            return SandboxResponse(404, {"error": f"sandbox {name} has no action {action}"})
        except ValueError as exc:  # the hook's arguments are wrong (an unknown id, say)
            return SandboxResponse(400, {"error": str(exc)})


def control(base_url: str, name: str, action: str, payload: dict | None = None) -> dict:
    """Client side of the control API (tests and the demo use it)."""
    import requests

    response = requests.post(f"{base_url}/_sandbox/{name}/{action}", json=payload or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)
