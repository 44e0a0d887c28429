"""The dashboard's shell in a real browser: logging in, wrong and revoked keys, the node switcher."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from .browser import Dashboard, log_in, shot


def test_the_page_and_its_assets_need_no_key_and_carry_a_strict_policy(dashboard: Dashboard) -> None:
    answer = httpx.get(dashboard.url + "/")
    assert answer.status_code == 200 and "/assets/main.js" in answer.text
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert httpx.get(dashboard.url + "/assets/main.js").status_code == 200
    assert httpx.get(dashboard.url + "/assets/..%2Findex.html").status_code == 404
    assert httpx.get(dashboard.url + "/api/v1/nodes").status_code == 401  # the data still needs a key


def test_a_wrong_key_is_refused_with_the_servers_reason(anonymous_page) -> None:  # type: ignore[no-untyped-def]
    page = anonymous_page
    shot(page, "login")
    log_in_attempt = page.get_by_label("API key")
    log_in_attempt.fill("ars_" + "0" * 12 + "_" + "x" * 43)  # well-formed, unknown
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("no such API key")
    log_in_attempt.fill("not a key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an Arsenal API key")


def test_a_revoked_key_ends_the_session_and_says_why(anonymous_page, dashboard: Dashboard) -> None:  # type: ignore[no-untyped-def]
    page = anonymous_page
    made = dashboard.make_key("viewer", "web-revoked")
    log_in(page, made["key"])
    expect(page.locator(".who")).to_contain_text("viewer")
    assert dashboard.cli("keys", "revoke", made["id"]).returncode == 0
    page.reload()
    expect(page.get_by_role("status")).to_contain_text(re.compile("revoked"))
    expect(page.get_by_label("API key")).to_be_visible()


def test_the_node_switcher_lists_both_nodes_and_switches(page, dashboard: Dashboard) -> None:  # type: ignore[no-untyped-def]
    switcher = page.get_by_label("node", exact=True)
    expect(switcher.locator("option")).to_have_count(2)
    switcher.select_option(dashboard.erl.name)
    page.reload()  # the choice is kept for the session
    expect(page.get_by_label("node", exact=True)).to_have_value(dashboard.erl.name)
