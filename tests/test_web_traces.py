"""The traces page in a real browser: a calls trace started from the form streams events from the
demo's busy counters, stops with its reason and is then stored and browsable; a message flow
through the demo's cascade worker draws a graph and a heat map; the server's refusal of a
malformed pattern shows next to the form; a viewer has no form."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from .browser import Dashboard, log_in, shot

# The load generator calls each counter ({:increment, 1}) every 200 ms: a steady stream of calls.
BUSY_FUNCTION = "ArsenalDemo.StatefulWorker.handle_call/3"


def form(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("form", name="start a trace")


def event_count(page: Page) -> int:
    return int(page.locator(".events-count").get_attribute("data-count") or "0")


def test_a_calls_trace_streams_stops_and_is_stored(page: Page, dashboard: Dashboard) -> None:
    page.goto("/#/traces")
    start = form(page)
    start.get_by_label("patterns, one per line").fill(BUSY_FUNCTION)
    # Generous limits, so that the test's Stop ends it, not a limit.
    start.get_by_label("max events").fill("5000")
    start.get_by_label("duration (s)").fill("120")
    expect(start.get_by_label("rate (events)")).to_have_value("1000")  # the API's default, shown
    start.get_by_role("button", name="Start trace").click()

    expect(page).to_have_url(re.compile(r"#/traces/[0-9a-f]+$"))
    trace_id = page.url.rsplit("/", 1)[1]
    expect(page.locator(".traces.session .status")).to_contain_text("running")
    rows = page.locator("table.events tbody tr")
    expect(rows.first).to_be_visible()
    expect(rows.first.locator("td.kind")).to_have_text("call")
    expect(rows.first.locator("td.detail")).to_contain_text("handle_call")
    # The count rises while the page is open: events keep arriving.
    seen = event_count(page)
    page.wait_for_function("n => Number(document.querySelector('.events-count').dataset.count) > n", arg=seen)
    page.wait_for_function("n => document.querySelectorAll('table.events tbody tr').length > n", arg=1)
    expect(page.get_by_label("limits")).to_contain_text("/ 5,000")
    expect(page.get_by_label("limits")).to_contain_text("time left")
    shot(page, "traces")

    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".end-reason")).to_have_text("stopped")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    stored = dashboard.api("GET", f"/traces/{trace_id}").json()["data"]["trace"]
    assert stored["status"] == "finished" and stored["end_reason"] == "stopped" and stored["events"] > 0

    # The stored list has it; opening it pages its events from the store.
    page.get_by_role("link", name="sessions", exact=False).first.click()
    sessions = page.get_by_role("region", name="trace sessions")
    row = sessions.locator("tr", has=page.get_by_role("link", name=trace_id))
    expect(row).to_contain_text("ended: stopped")
    expect(row).to_contain_text(BUSY_FUNCTION)
    row.get_by_role("link", name=trace_id).click()
    expect(page.locator(".end-reason")).to_have_text("stopped")
    expect(page.locator("table.events tbody tr").first.locator("td.kind")).to_have_text("call")
    expect(page.locator("table.events tbody tr").first.locator("td.num").first).to_have_text("1")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export JSON lines").click()
    exported = Path(download.value.path()).read_text().splitlines()
    assert len(exported) == stored["events"] and json.loads(exported[0])["kind"] == "call"


def test_message_patterns_count_who_sends_to_whom(page: Page) -> None:
    page.goto("/#/traces")
    start = form(page)
    start.get_by_role("tab", name="Message patterns").click()
    # The events hub sends each publish on to its subscriber (the load generator): 5 a second.
    start.get_by_label("senders (pids or names, or all)").fill(":arsenal_demo_events")
    start.get_by_label("duration (s)").fill("1.5")
    start.get_by_role("button", name="Watch").click()
    patterns = page.get_by_role("region", name="message patterns")
    expect(patterns).to_contain_text("ended: max_ms")
    expect(patterns.locator(".flow-graph .gnode").nth(1)).to_be_attached()
    expect(patterns.get_by_role("table", name="heat map").locator("td.cell.hot").first).to_be_visible()
    expect(patterns.locator("table.shapes")).to_contain_text("arsenal_event")
    page.evaluate("window.scrollTo(0, document.querySelector('.analysis').offsetTop - 60)")
    shot(page, "message-patterns")


def test_a_message_flow_draws_processes_and_a_heat_map(page: Page) -> None:
    page.goto("/#/traces")
    start = form(page)
    start.get_by_role("tab", name="Message flow").click()
    # The cascade worker calls the pool through its breaker (:ping → :pong) and answers the origin.
    start.get_by_label("first receiver (pid or name)").fill(":arsenal_demo_cascade")
    start.get_by_label("message (a term, or tagged JSON)").fill("{:call_dependency, :arsenal_demo_pool}")
    start.get_by_label("send as").select_option("call")
    start.get_by_label("idle end (s)").fill("0.5")
    start.get_by_role("button", name="Send and follow").click()

    flow = page.get_by_role("region", name="message flow")
    expect(flow).to_contain_text("Message flow into")
    nodes = flow.locator(".flow-graph .gnode")
    expect(nodes.nth(2)).to_be_attached()  # the origin, the cascade worker and the pool at least
    assert nodes.count() >= 3
    expect(flow.locator(".flow-graph text", has_text="arsenal_demo_pool")).to_be_visible()
    expect(flow.locator(".flow-graph .edge").first).to_be_attached()
    hot = flow.get_by_role("table", name="heat map").locator("td.cell.hot")
    expect(hot.first).to_be_visible()
    assert all(int(text) > 0 for text in hot.all_inner_texts())
    # The pool is a process with an inspector link in the graph.
    expect(flow.locator(".flow-graph a[href^='#/process/']").first).to_be_attached()
    expect(flow.locator(".flow-edges tbody tr").first).to_contain_text("call_dependency")
    # The replay walks the messages in causal order, lighting each one's arrow.
    flow.get_by_role("button", name="Replay the messages").click()
    expect(flow.locator(".flow-graph .edge.hot")).to_have_count(1)
    expect(flow.locator(".flow-edges tr.current")).to_have_count(1)
    page.evaluate("window.scrollTo(0, document.querySelector('.analysis').offsetTop - 60)")
    shot(page, "message-flow")


def test_a_messages_session_shows_who_talks_to_whom(page: Page, dashboard: Dashboard) -> None:
    page.goto("/#/traces")
    start = form(page)
    start.get_by_role("tab", name="Messages").click()
    # The events hub receives a publish every 200 ms and sends it on to its subscriber.
    start.get_by_label("processes (pids or names, or all)").fill(":arsenal_demo_events")
    start.get_by_label("max events").fill("30")
    start.get_by_role("button", name="Start trace").click()
    expect(page.locator(".end-reason")).to_have_text("max_events", timeout=30_000)
    page.get_by_role("tab", name="Who talks to whom").click()
    expect(page.locator(".flow-graph .gnode").nth(1)).to_be_attached()
    expect(page.get_by_role("table", name="heat map").locator("td.cell.hot").first).to_be_visible()
    shot(page, "traces-who-talks")


def test_a_malformed_pattern_shows_the_servers_error_by_the_form(page: Page) -> None:
    page.goto("/#/traces")
    start = form(page)
    start.get_by_label("patterns, one per line").fill("ArsenalDemo.StatefulWorker.handle_call(X, ")
    start.get_by_role("button", name="Start trace").click()
    alert = start.get_by_role("alert")
    expect(alert).to_contain_text("pattern 'ArsenalDemo.StatefulWorker.handle_call(X,'")
    expect(alert).to_contain_text("expected an argument pattern")
    expect(page).to_have_url(re.compile(r"#/traces$"))  # nothing started

    # A limit out of range: the server's own field-by-field answer.
    start.get_by_label("patterns, one per line").fill(BUSY_FUNCTION)
    start.get_by_label("max events").fill("0")
    start.get_by_role("button", name="Start trace").click()
    expect(start.get_by_role("alert")).to_contain_text(
        "max_events: Input should be greater than or equal to 1"
    )


def test_a_viewer_browses_sessions_but_cannot_start_one(anonymous_page: Page, dashboard: Dashboard) -> None:
    page = anonymous_page
    log_in(page, dashboard.make_key("viewer", "web-traces-viewer")["key"])
    page.goto("/#/traces")
    expect(page.get_by_role("region", name="trace sessions")).to_be_visible()
    expect(page.get_by_text("Starting a trace needs a key with the write right")).to_be_visible()
    expect(form(page)).to_have_count(0)
