"""Pure: the route table → one whole Caddy JSON config, loaded atomically through POST /load."""

from __future__ import annotations

from typing import Any

from dockyard.router.rollout import split
from dockyard.router.routes import AppRoute, RouteTable

SERVER = "dockyard"
# Open streams (websockets, SSE) on the old upstreams survive a switch for this long.
STREAM_CLOSE_DELAY = "5m"
RETRY_AFTER = "5"
PENDING_BODY = "app is being deployed, retry shortly\n"
NO_WEB_BODY = "app has no web process\n"
NOT_FOUND_BODY = "no app at this host\n"
# An app in maintenance: clients are told to come back in a minute.
MAINTENANCE_RETRY_AFTER = "60"
MAINTENANCE_BODY = "app is down for maintenance, retry later\n"


def host_of(app: str, domain: str) -> str:
    """The host an app answers at."""
    return f"{app}.{domain}"


def app_of_host(host: str, domain: str) -> str | None:
    """The app a request's host names, or None for a host of no app."""
    app, dot, rest = host.partition(".")
    return app if dot and rest == domain and app else None


def join_host_port(host: str, port: int) -> str:
    """host:port, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _static(status: int, body: str, headers: dict[str, list[str]] | None = None) -> dict[str, Any]:
    handler: dict[str, Any] = {"handler": "static_response", "status_code": status, "body": body}
    if headers:
        handler["headers"] = headers
    return handler


# With upstream files, every routed app gets this many dial slots, its addresses repeated over
# them (slot i dials address i mod n): the config's shape does not change when an app's number
# of web instances does (a scale), so no reload resets the connections arriving then.
DIAL_SLOTS = 20


# The cookie that keeps a client on its dial slot (apps with a [rollout]): during a canary a
# slot is the old release's or the new one's, so a client does not bounce between the two.
STICKY_COOKIE = "dockyard_slot"


def slotted(route: AppRoute) -> list[str]:
    """The addresses written to an app's upstream files (DIAL_SLOTS of them, or one per
    instance past that): its upstreams', with a canary's share of the slots the new release's."""
    slots = max(DIAL_SLOTS, len(route.upstreams), len(route.canary))
    return split(route.upstreams, route.canary, route.canary_percent, slots)


def dial_placeholder(routes_dir: str, app: str, index: int) -> str:
    """A dial address Caddy reads from a file on every request (the switch rewrites the file)."""
    return "{file." + f"{routes_dir}/{app}/current/{index}" + "}"


def maintenance_body(message: str | None) -> str:
    """The maintenance page: the fixed line, then the operator's message if any (checked to hold
    no Caddy placeholder when it was recorded: state/maintenance.py check_message)."""
    return MAINTENANCE_BODY + (f"{message}\n" if message else "")


def app_handler(route: AppRoute, routes_dir: str | None = None) -> dict[str, Any]:
    """The handler of one app's host (upstreams read from files when routes_dir is given)."""
    if route.maintenance:
        return _static(503, maintenance_body(route.message),
                       {"Retry-After": [MAINTENANCE_RETRY_AFTER],
                        "Content-Type": ["text/plain; charset=utf-8"]})
    if route.pending:
        return _static(503, PENDING_BODY, {"Retry-After": [RETRY_AFTER],
                                           "Content-Type": ["text/plain; charset=utf-8"]})
    if not route.upstreams:
        return _static(503, NO_WEB_BODY, {"Content-Type": ["text/plain; charset=utf-8"]})
    if routes_dir is not None:
        dials = [dial_placeholder(routes_dir, route.app, i) for i in range(len(slotted(route)))]
    else:
        dials = slotted(route) if route.canary_percent else list(route.upstreams)
    handler: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial} for dial in dials],
        "flush_interval": -1,
        "stream_close_delay": STREAM_CLOSE_DELAY,
    }
    if route.sticky:
        handler["load_balancing"] = {"selection_policy": {
            "policy": "cookie", "name": STICKY_COOKIE, "fallback": {"policy": "random"}}}
    return handler


# The access log names the instance that served each request: the router's per-release figures.
UPSTREAM_FIELD = "upstream"
ACCESS_LOGGER = "dockyard"


def with_access_fields(handler: dict[str, Any]) -> list[dict[str, Any]]:
    """An app's handlers: a proxy's first records its upstream in the access log entry."""
    if handler["handler"] != "reverse_proxy":
        return [handler]
    return [{"handler": "log_append", "key": UPSTREAM_FIELD,
             "value": "{http.reverse_proxy.upstream.hostport}"}, handler]


def access_logging(address: str) -> dict[str, Any]:
    """Caddy's logging: the server's access log, as JSON lines, to the router's socket only
    (not to Caddy's own log file); Caddy keeps serving while nobody listens there."""
    name = f"http.log.access.{ACCESS_LOGGER}"
    return {"logs": {
        "default": {"exclude": [name]},
        "access": {"writer": {"output": "net", "address": address, "dial_timeout": "1s",
                              "soft_start": True},
                   "encoder": {"format": "json"}, "include": [name]},
    }}


def build_config(table: RouteTable, *, domain: str, listen: str, admin_listen: str,
                 routes_dir: str | None = None,
                 access_log: str | None = None) -> dict[str, Any]:
    """The whole Caddy config: one server, a terminal route per app host, 404 for any other host.

    With routes_dir, an app's upstream addresses are not in the config but in files Caddy reads
    per request, so switching an app to new instances rewrites files and reloads nothing: a
    reload re-binds the listener and resets the connections arriving at that moment.

    With access_log (a Caddy network address), every request is logged there as JSON with the
    upstream that served it.
    """
    def handlers(app: str) -> list[dict[str, Any]]:
        handler = app_handler(table[app], routes_dir)
        return with_access_fields(handler) if access_log else [handler]

    routes: list[dict[str, Any]] = [
        {"match": [{"host": [host_of(app, domain)]}], "handle": handlers(app), "terminal": True}
        for app in sorted(table)
    ]
    routes.append({"handle": [_static(404, NOT_FOUND_BODY,
                                      {"Content-Type": ["text/plain; charset=utf-8"]})],
                   "terminal": True})
    server: dict[str, Any] = {
        "listen": [listen],
        # Host matchers would otherwise turn on automatic HTTPS: plain HTTP gets a TLS error.
        "automatic_https": {"disable": True},
        "routes": routes,
    }
    config: dict[str, Any] = {
        # The admin address must be in every loaded config, or Caddy falls back to :2019.
        "admin": {"listen": admin_listen, "config": {"persist": False}},
        "apps": {"http": {"servers": {SERVER: server}}},
    }
    if access_log:
        server["logs"] = {"default_logger_name": ACCESS_LOGGER}
        config["logging"] = access_logging(access_log)
    return config
