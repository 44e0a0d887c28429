"""The system dashboard in a real browser: live figures and charts from the demo nodes, the health
score, alerts (acknowledged by writers only), the node switcher, and a node that goes down and
comes back."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .browser import VIEWPORT, Dashboard, log_in, shot
from .nodes import erl_node

LIVE = 30_000  # ms: pushes come every 2 s, the node sampler (alerts) every 10 s, a reconnect ≤ 10 s


def _figure(page: Page, name: str) -> int:
    """The count a figure tile shows (its data-value)."""
    value = page.locator(f'.figure[data-figure="{name}"] .figure-value')
    expect(value).to_have_attribute("data-value", re.compile(r"^\d+$"))
    return int(value.get_attribute("data-value") or "0")


def _points(page: Page, chart: str) -> int:
    return int(page.get_by_role("region", name=chart).get_attribute("data-points") or "0")


def _wait_points(page: Page, chart: str, more_than: int) -> None:
    """Wait until a chart holds more than ``more_than`` points (pushes arriving, not a clock)."""
    page.wait_for_function(
        "([chart, n]) => Number(document.querySelector(`section[aria-label='${chart}']`)"
        "?.dataset.points ?? 0) > n",
        arg=[chart, more_than],
        timeout=LIVE,
    )


def test_the_dashboard_shows_live_figures_and_charts_of_the_demo_node(
    page: Page, dashboard: Dashboard
) -> None:
    truth = dashboard.api("GET", "/system/metrics").json()["data"]
    assert truth["node"] == dashboard.node.name

    facts = page.get_by_label("node facts")
    expect(facts).to_contain_text(dashboard.node.name)
    expect(facts.locator('[data-fact="language"]')).to_contain_text("elixir")
    expect(facts.locator('[data-fact="OTP"]')).to_contain_text(truth["otp_release"])

    # The figures are the node's own: the same order of magnitude as the API's answer.
    processes = _figure(page, "processes")
    assert truth["process_count"] * 0.5 <= processes <= truth["process_count"] * 2 + 50
    expect(page.locator('.figure[data-figure="processes"]')).to_contain_text(f"of {truth['process_limit']:,}")
    atoms = _figure(page, "atoms")
    assert truth["atom_count"] <= atoms <= truth["atom_limit"]
    assert truth["port_count"] * 0.5 <= _figure(page, "ports") <= truth["port_count"] * 2 + 20
    assert truth["ets_count"] * 0.5 <= _figure(page, "ets_tables") <= truth["ets_count"] * 2 + 20
    for kind in ("processes", "ets", "binary", "atom", "code", "system"):
        expect(page.locator(f'[data-memory="{kind}"] .num')).to_have_text(re.compile(r"\d.* (B|KiB|MiB|GiB)"))
    # Scheduler usage needs two samples (wall-time deltas); then one bar per scheduler.
    expect(page.locator('.figure[data-figure="schedulers"] .figure-value')).to_have_text(
        re.compile(r"^\d+%$")
    )
    expect(page.locator(".scheduler-bar")).to_have_count(truth["schedulers"])

    # Every chart is drawn, and gets new points as pushes arrive.
    for chart in (
        "Memory by type",
        "Scheduler utilisation",
        "Processes",
        "Run queues",
        "Atoms",
        "Ports and ETS tables",
    ):
        expect(page.get_by_role("region", name=chart).locator("canvas")).to_have_count(1)
    _wait_points(page, "Memory by type", 2)
    before = _points(page, "Scheduler utilisation")
    _wait_points(page, "Scheduler utilisation", before + 1)
    expect(page.get_by_role("region", name="Scheduler utilisation")).to_contain_text("average")

    # The health score and its reasons, as the API gives them.
    health = dashboard.api("GET", "/system/health").json()["data"]
    panel = page.get_by_role("region", name="health")
    expect(panel.locator(".health-score")).to_have_attribute("data-score", re.compile(r"^\d+$"))
    expect(panel.locator(".health-reasons tbody tr")).to_have_count(len(health["reasons"]))
    expect(panel).to_contain_text(health["reasons"][0]["check"])
    score = int(panel.locator(".health-score").get_attribute("data-score") or "-1")
    assert abs(score - health["score"]) <= 20
    expect(page.get_by_label("node facts").locator(".health-badge")).to_contain_text(f"health {score}")

    _wait_points(page, "Processes", 6)  # a few points on the charts for the README's picture
    shot(page, "dashboard")


def test_switching_node_shows_that_nodes_figures(page: Page, dashboard: Dashboard) -> None:
    truth = dashboard.api("GET", "/system/metrics", params={"node": dashboard.erl.name}).json()["data"]
    elixir = dashboard.api("GET", "/system/metrics").json()["data"]
    _figure(page, "processes")  # the default node's figures first
    page.get_by_label("node", exact=True).select_option(dashboard.erl.name)

    facts = page.get_by_label("node facts")
    expect(facts.locator("h2")).to_contain_text(dashboard.erl.name)
    expect(facts.locator('[data-fact="language"]')).to_contain_text("erlang")
    processes = _figure(page, "processes")
    assert truth["process_count"] * 0.5 <= processes <= truth["process_count"] * 2 + 50
    if elixir["process_count"] > 3 * truth["process_count"]:  # the two demos differ: not the old node
        assert processes < elixir["process_count"]
    # A fresh page per node: its charts start over and grow with this node's pushes.
    _wait_points(page, "Processes", 2)
    assert _points(page, "Processes") < 40


def _add_rule(dashboard: Dashboard) -> str:
    """An alert rule that fires once on the demo node (its process count is always ≥ 1)."""
    made = dashboard.api(
        "POST",
        "/alerts/rules",
        json={
            "name": "web dashboard test",
            "metric": "process_count",
            "comparison": ">=",
            "threshold": 1,
            "window_seconds": 3600,  # fires once, at the sampler's next sample
            "node": dashboard.node.name,
        },
    )
    assert made.status_code in (200, 201), made.text
    return made.json()["data"]["id"]


def test_alerts_arrive_live_and_only_writers_may_acknowledge(
    page: Page, browser, dashboard: Dashboard
) -> None:  # type: ignore[no-untyped-def]
    alerts = page.get_by_role("region", name="alerts")
    expect(alerts.get_by_role("heading", name="Alerts")).to_be_visible()
    rule = _add_rule(dashboard)
    try:
        # Pushed by the alerts channel while the page is open (the sampler evaluates every 10 s).
        row = alerts.locator("tr", has_text=f"rule {rule}")
        expect(row).to_have_count(1, timeout=LIVE)
        expect(row.get_by_role("button", name="Acknowledge")).to_be_visible()

        viewer = dashboard.make_key("viewer", "web-dash-viewer")
        context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url)
        errors: list[str] = []
        try:
            other = context.new_page()
            other.on("pageerror", lambda error: errors.append(str(error)))
            other.goto("/")
            log_in(other, viewer["key"])
            seen = other.get_by_role("region", name="alerts").locator("tr", has_text=f"rule {rule}")
            expect(seen).to_have_count(1)
            expect(other.get_by_role("button", name="Acknowledge")).to_have_count(0)
            expect(other.locator(".health-score")).to_be_visible()  # the rest of the page is there
        finally:
            context.close()
        assert not errors, errors

        row.get_by_role("button", name="Acknowledge").click()
        expect(row).to_contain_text("seen by web-admin")
        expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
        listed = dashboard.api("GET", "/alerts", params={"limit": 50}).json()["data"]["alerts"]
        assert any(a["rule"] == rule and a["acknowledged_by"] == "web-admin" for a in listed)
    finally:
        dashboard.api("DELETE", f"/alerts/rules/{rule}")


def test_a_node_going_down_keeps_the_figures_and_charting_resumes(
    page: Page, dashboard: Dashboard, cookie: str
) -> None:
    throwaway = erl_node("webdown", cookie=cookie).start()
    name = throwaway.name
    again = erl_node(cookie=cookie, alive=throwaway.alive)  # the same name, started later
    attached = dashboard.api("POST", "/nodes", json={"name": name})
    assert attached.status_code in (200, 201), attached.text
    try:
        switcher = page.get_by_label("node", exact=True)
        expect(switcher.locator(f'option[value="{name}"]')).to_have_count(1)  # the shell polls /nodes
        switcher.select_option(name)
        expect(page.get_by_label("node facts").locator("h2")).to_contain_text(name)
        _wait_points(page, "Processes", 3)
        processes = _figure(page, "processes")
        otp = page.get_by_label("node facts").locator('[data-fact="OTP"]')
        expect(otp).to_contain_text(re.compile(r"\d"))

        throwaway.kill()
        throwaway.wait_unregistered()
        expect(page.get_by_role("alert").filter(has_text=f"Node {name} is down")).to_be_visible(timeout=LIVE)
        notice = page.locator(".dash-down")
        expect(notice).to_contain_text("last ones received", timeout=LIVE)
        # The last figures and facts stay on screen; the charts keep their points.
        assert _figure(page, "processes") == processes
        expect(otp).to_contain_text(re.compile(r"\d"))
        expect(page.get_by_role("region", name="Processes").locator("canvas")).to_have_count(1)
        held = _points(page, "Processes")
        assert held >= 1
        shot(page, "dashboard-node-down")

        again.start()  # Arsenal reconnects by itself
        expect(notice).to_have_count(0, timeout=LIVE)
        _wait_points(page, "Processes", held + 1)
        expect(page.get_by_label("node facts").locator(".dot.ok")).to_be_visible()
    finally:
        dashboard.api("DELETE", f"/nodes/{name}")
        throwaway.kill()
        again.kill()
