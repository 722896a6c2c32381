"""The Caddy JSON config, tested as a value."""

from __future__ import annotations

from typing import Any

from dockyard.router.config import build_config, join_host_port
from dockyard.router.routes import AppRoute

TABLE = {
    "shop": AppRoute(app="shop", upstreams=("127.0.0.1:5001", "127.0.0.1:5002")),
    "blog": AppRoute(app="blog", pending=True),
    "cron": AppRoute(app="cron"),
}


def config() -> dict[str, Any]:
    return build_config(TABLE, domain="example.test", listen="127.0.0.1:8080",
                        admin_listen="127.0.0.1:2999")


def server() -> dict[str, Any]:
    return config()["apps"]["http"]["servers"]["dockyard"]  # type: ignore[no-any-return]


def test_admin_address_and_no_persistence() -> None:
    assert config()["admin"] == {"listen": "127.0.0.1:2999", "config": {"persist": False}}


def test_one_server_plain_http() -> None:
    assert list(config()["apps"]["http"]["servers"]) == ["dockyard"]
    assert server()["listen"] == ["127.0.0.1:8080"]
    assert server()["automatic_https"] == {"disable": True}


def test_routes_by_host_sorted_then_404() -> None:
    routes = server()["routes"]
    assert [r.get("match") for r in routes] == [
        [{"host": ["blog.example.test"]}],
        [{"host": ["cron.example.test"]}],
        [{"host": ["shop.example.test"]}],
        None,
    ]
    assert all(r["terminal"] is True for r in routes)


def test_live_app_proxies_to_its_web_instances() -> None:
    assert server()["routes"][2]["handle"] == [{
        "handler": "reverse_proxy",
        "upstreams": [{"dial": "127.0.0.1:5001"}, {"dial": "127.0.0.1:5002"}],
        "flush_interval": -1,
        "stream_close_delay": "5m",
    }]


def test_pending_app_answers_503_with_retry_after() -> None:
    (handler,) = server()["routes"][0]["handle"]
    assert handler["handler"] == "static_response"
    assert handler["status_code"] == 503
    assert handler["headers"]["Retry-After"] == ["5"]
    assert handler["body"]


def test_live_app_without_web_answers_503_without_retry_after() -> None:
    (handler,) = server()["routes"][1]["handle"]
    assert handler["status_code"] == 503
    assert "Retry-After" not in handler["headers"]


def test_an_app_in_maintenance_answers_503_with_its_page_whatever_its_route() -> None:
    for route in (AppRoute(app="shop", upstreams=("127.0.0.1:5001",), maintenance=True,
                           message="back at 10:00 UTC"),
                  AppRoute(app="shop", pending=True, maintenance=True,
                           message="back at 10:00 UTC")):
        (handler,) = build_config({"shop": route}, domain="example.test", listen=":80",
                                  admin_listen="127.0.0.1:2999", routes_dir="/r"
                                  )["apps"]["http"]["servers"]["dockyard"]["routes"][0]["handle"]
        assert handler == {
            "handler": "static_response", "status_code": 503,
            "body": "app is down for maintenance, retry later\nback at 10:00 UTC\n",
            "headers": {"Retry-After": ["60"], "Content-Type": ["text/plain; charset=utf-8"]}}


def test_other_hosts_answer_404() -> None:
    (handler,) = server()["routes"][-1]["handle"]
    assert (handler["handler"], handler["status_code"], handler["body"]) == (
        "static_response", 404, "no app at this host\n")


def test_empty_table_is_only_the_404() -> None:
    routes = build_config({}, domain="localhost", listen="127.0.0.1:1",
                          admin_listen="127.0.0.1:2")["apps"]["http"]["servers"]["dockyard"]["routes"]
    assert len(routes) == 1 and routes[0]["handle"][0]["status_code"] == 404


def test_ipv6_listen() -> None:
    assert join_host_port("::1", 80) == "[::1]:80"
    assert join_host_port("0.0.0.0", 80) == "0.0.0.0:80"
