"""The process inspector in a real browser: its tabs on a demo worker, editing a state, parse
errors, a process killed while inspected, a huge state, bad pids, a viewer's page, a live trace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from .browser import Dashboard, log_in, shot

DYNAMIC = "ArsenalDemo.DynamicWorkers"


def _path(pid: str) -> str:
    return quote(pid, safe="")


@pytest.fixture
def worker(dashboard: Dashboard) -> Iterator[str]:
    """A StatefulWorker of this test's own (temporary: never restarted), stopped afterwards."""
    started = dashboard.api(
        "POST",
        f"/supervisors/{DYNAMIC}/dynamic-children",
        json={"module": "ArsenalDemo.StatefulWorker", "args": [[]]},
    )
    assert started.status_code == 200, started.text
    pid = started.json()["data"]["pid"]
    yield pid
    dashboard.api("DELETE", f"/processes/{_path(pid)}", json={"reason": "kill"})


def _goto(page: Page, hash_path: str) -> None:
    """Load the page at this route. A full load, not a hash change: right after logging in, the
    shell may not listen to hash changes yet (its effects run after the first paint)."""
    page.goto("about:blank")
    page.goto("/#" + hash_path)


def _open(page: Page, pid: str) -> None:
    _goto(page, f"/process/{_path(pid)}")
    expect(page.locator(".inspector-head h2")).to_contain_text(pid)


def _tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _state(dashboard: Dashboard, pid: str) -> dict:  # type: ignore[type-arg]
    answer = dashboard.api("GET", f"/processes/{_path(pid)}/state")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_the_tabs_show_a_demo_worker(page: Page, dashboard: Dashboard) -> None:
    _open(page, "ArsenalDemo.Counter2")
    head = page.locator(".inspector-head")
    expect(head).to_contain_text("ArsenalDemo.Counter2")
    expect(head).to_contain_text("ArsenalDemo.StatefulWorker.init/1")  # the initial call
    expect(head).to_contain_text(re.compile(r"\d+(\.\d)? KiB"))  # memory
    expect(page.get_by_role("button", name="Kill")).to_be_visible()
    pid = _state(dashboard, "ArsenalDemo.Counter2")["pid"]
    info = dashboard.api("GET", f"/processes/{_path('ArsenalDemo.Counter2')}").json()["data"]
    expect(head).to_contain_text(info["pid"])

    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("trap exit")  # Info
    _tab(page, "State")
    expect(panel.get_by_label("state")).to_contain_text("counter:")
    expect(panel).to_contain_text("ArsenalDemo.StatefulWorker")
    _tab(page, "Mailbox")
    expect(panel).to_contain_text("queue length")
    expect(panel).to_contain_text("The mailbox is empty")
    _tab(page, "Links & monitors")
    supervisor = info["info"]["links"][0]
    link = panel.get_by_role("link", name=supervisor).first
    expect(link).to_have_attribute("href", re.compile(r"#/process/%3C0\."))
    _tab(page, "Dictionary")
    expect(panel).to_contain_text("$ancestors")
    expect(panel).to_contain_text("ArsenalDemo.PairSupervisor")
    _tab(page, "Stacktrace")
    expect(panel).to_contain_text(":gen_server.loop/")
    _tab(page, "History")
    expect(panel).to_contain_text(re.compile("Nothing yet|checkpoint|trace"))
    _tab(page, "Memory & queue")
    expect(panel.locator("canvas")).to_have_count(2)
    # Points arrive once a second from the process channel.
    expect(panel).to_contain_text(re.compile(r"\b([3-9]|\d\d+) samples"), timeout=15_000)
    expect(panel.locator(".u-legend").first).to_contain_text("memory")
    assert pid  # the state was read for the same process

    # A pid in the links opens that process's inspector.
    _tab(page, "Links & monitors")
    panel.get_by_role("link", name=supervisor).first.click()
    expect(page.locator(".inspector-head h2")).to_contain_text(supervisor)
    expect(page.locator(".inspector-head")).to_contain_text("ArsenalDemo.PairSupervisor")


def test_the_charts_follow_memory_and_queue_live(page: Page, dashboard: Dashboard, worker: str) -> None:
    def call(message: object, mode: str = "call") -> None:
        sent = dashboard.api(
            "POST", f"/processes/{_path(worker)}/message", json={"message": message, "mode": mode}
        )
        assert sent.status_code == 200, sent.text

    _open(page, worker)
    _tab(page, "Memory & queue")
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text(re.compile(r"\b([2-9]|\d\d+) samples"))
    memory = panel.locator(".chart").filter(has_text="Memory").locator("h3")
    expect(memory).to_contain_text(re.compile(r"Memory \d+(\.\d)? KiB"))  # a fresh worker: a few KiB
    call({"$tuple": [{"$atom": "grow"}, 2048]})  # 2 MiB more heap
    expect(memory).to_contain_text(re.compile(r"Memory \d+(\.\d)? MiB"))
    # A suspended process does not take its messages: the queue grows where everyone can see it.
    assert dashboard.api("POST", f"/processes/{_path(worker)}/suspend").status_code == 200
    try:
        for n in range(5):
            call(n, mode="send")
        expect(panel.locator(".chart").filter(has_text="Message queue").locator("h3")).to_have_text(
            "Message queue 5"
        )
        expect(page.locator(".inspector-head")).to_contain_text("suspended")
        expect(panel).to_contain_text(re.compile(r"\b(1[2-9]|[2-9]\d) samples"), timeout=20_000)
        shot(page, "inspector-charts")
    finally:
        dashboard.api("POST", f"/processes/{_path(worker)}/resume")


def test_editing_the_state_saves_it_and_shows_the_new_value(
    page: Page, dashboard: Dashboard, worker: str
) -> None:
    _open(page, worker)
    _tab(page, "State")
    view = page.get_by_role("tabpanel").get_by_label("state", exact=True)
    expect(view).to_contain_text("counter: 0")
    page.get_by_role("button", name="Edit state").click()
    editor = page.get_by_label("new state")
    text = editor.input_value()
    assert "counter: 0" in text and text.startswith("%{")  # the node's own syntax
    editor.fill(text.replace("counter: 0", "counter: 4242"))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="State saved")).to_contain_text("counter")
    expect(view).to_contain_text("counter: 4242")
    assert [{"$atom": "counter"}, 4242] in _state(dashboard, worker)["state_json"]["$map"]  # any order
    shot(page, "inspector-state")

    # A parse error says where: line and column, and nothing is written.
    page.get_by_role("button", name="Edit state").click()
    editor.fill("%{counter: 1,\n  name: }")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".editor-error")).to_contain_text("line 2, column 9")
    expect(page.get_by_role("alert")).to_contain_text("does not parse as elixir")
    assert "counter: 4242" in _state(dashboard, worker)["state"]

    # A deep merge of a part, in tagged JSON (the syntax switches on the text as read).
    page.get_by_role("button", name="Reset text").click()
    page.get_by_label("syntax").select_option("json")
    assert '"$atom": "counter"' in editor.input_value()
    page.get_by_label("merge strategy").select_option("deep_merge")
    editor.fill('{"$map": [[{"$atom": "counter"}, 7]]}')
    page.get_by_role("button", name="Save").click()
    expect(view).to_contain_text("counter: 7")
    assert "counter: 7" in _state(dashboard, worker)["state"]

    # Undo: the backup checkpoint taken before the merge goes back in.
    page.get_by_role("button", name="Undo (roll back)").click()
    expect(page.get_by_role("status").filter(has_text="Rolled back")).to_be_visible()
    expect(view).to_contain_text("counter: 4242")
    assert "counter: 4242" in _state(dashboard, worker)["state"]


def test_an_erlang_nodes_state_is_shown_and_edited_in_erlang_syntax(page: Page, dashboard: Dashboard) -> None:
    erl = {"node": dashboard.erl.name}
    name = "arsenal_demo_erl_worker"  # an atom the node has (the module's name), free as a name
    started = dashboard.api(
        "POST",
        "/processes",
        params=erl,
        json={"module": name, "function": "start_link", "args": [{"$atom": name}, {}]},
    )
    assert started.status_code == 200, started.text  # its pid is the starter's: ask the name's
    pid = dashboard.api("GET", f"/processes/{name}", params=erl).json()["data"]["pid"]
    try:
        _goto(page, f"/process/{name}?node={dashboard.erl.name}")
        expect(page.get_by_label("node", exact=True)).to_have_value(dashboard.erl.name)
        expect(page.locator(".inspector-head h2")).to_contain_text(pid)
        _tab(page, "State")
        view = page.get_by_role("tabpanel").get_by_label("state", exact=True)
        expect(view).to_contain_text("calls => 0")
        expect(view).to_contain_text("tags => [demo,")
        page.get_by_role("button", name="Edit state").click()
        editor = page.get_by_label("new state")
        text = editor.input_value()
        assert text.startswith("#{") and "calls => 0" in text, text
        editor.fill(text.replace("calls => 0", "calls => 4242"))
        page.get_by_role("button", name="Save").click()
        expect(view).to_contain_text("calls => 4242")
        answer = dashboard.api("GET", f"/processes/{_path(pid)}/state", params=erl)
        assert "calls => 4242" in answer.json()["data"]["state"]
    finally:
        dashboard.api("DELETE", f"/processes/{_path(pid)}", params=erl, json={"reason": "kill"})


def test_a_process_killed_while_inspected_says_so_and_keeps_its_data(page: Page, worker: str) -> None:
    _open(page, worker)
    _tab(page, "State")
    expect(page.get_by_role("tabpanel")).to_contain_text("counter: 0")
    page.get_by_role("button", name="Kill").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Kill")
    dialog.get_by_role("button", name="Kill").click()
    expect(page.locator(".notice.exited")).to_contain_text(re.compile("process exited: :?killed"))
    expect(page.locator("[data-testid=status]")).to_have_text("exited")
    # The last data stays: the state read before, the header, the info.
    expect(page.get_by_role("tabpanel")).to_contain_text("counter: 0")
    expect(page.locator(".inspector-head h2")).to_contain_text(worker)
    _tab(page, "Info")
    expect(page.get_by_role("tabpanel")).to_contain_text("trap exit")
    expect(page.get_by_role("button", name="Kill")).to_have_count(0)


def test_an_exit_from_elsewhere_arrives_with_its_reason(
    page: Page, dashboard: Dashboard, worker: str
) -> None:
    _open(page, worker)
    expect(page.locator(".inspector-head")).to_contain_text("StatefulWorker")
    # Wait until the live channel has reported once, so the exit comes through it.
    _tab(page, "Memory & queue")
    expect(page.get_by_role("tabpanel")).to_contain_text(re.compile(r"\b[1-9]\d* samples"))
    killed = dashboard.api("DELETE", f"/processes/{_path(worker)}", json={"reason": "shutdown"})
    assert killed.status_code == 200 and killed.json()["data"]["died"], killed.text
    expect(page.locator(".notice.exited")).to_contain_text("process exited: :shutdown")  # Elixir syntax
    expect(page.locator(".chart canvas").first).to_be_visible()


def test_a_huge_state_is_rendered_bounded_with_more(page: Page, dashboard: Dashboard, worker: str) -> None:
    items = list(range(12_000))
    made = dashboard.api(
        "PUT",
        f"/processes/{_path(worker)}/state",
        json={"state": items, "merge_strategy": "partial_update", "path": "grown"},
    )
    assert made.status_code == 200, made.text
    _open(page, worker)
    _tab(page, "State")
    view = page.get_by_role("tabpanel").get_by_label("state", exact=True)
    more = view.get_by_role("button", name=re.compile(r"11\D?950 more"))
    expect(more).to_be_visible()
    assert view.locator(".t-line").count() < 200  # bounded: not 12 000 lines
    more.click()
    expect(view.get_by_role("button", name=re.compile(r"11\D?900 more"))).to_be_visible()


def test_unknown_and_malformed_pids_show_the_servers_error(page: Page) -> None:
    _goto(page, "/process/" + _path("<0.9999.0>"))
    expect(page.get_by_role("alert")).to_contain_text("is not alive")
    _goto(page, "/process/" + _path("no such thing!"))
    expect(page.get_by_role("alert")).to_contain_text("neither a pid")
    expect(page.locator(".inspector h2")).to_contain_text("no such thing!")


def test_a_viewer_sees_no_actions_and_no_editor(anonymous_page: Page, dashboard: Dashboard) -> None:
    page = anonymous_page
    log_in(page, dashboard.make_key("viewer", "web-inspector-viewer")["key"])
    _open(page, "ArsenalDemo.Counter2")
    expect(page.locator(".inspector-head")).to_contain_text("StatefulWorker")
    expect(page.get_by_role("button", name="Kill")).to_have_count(0)
    expect(page.get_by_role("button", name="Suspend")).to_have_count(0)
    _tab(page, "State")
    expect(page.get_by_role("tabpanel")).to_contain_text("counter:")
    expect(page.get_by_role("button", name="Edit state")).to_have_count(0)
    _tab(page, "Trace")
    expect(page.get_by_role("tabpanel")).to_contain_text("needs the write right")


def test_a_trace_shows_the_messages_as_they_arrive(page: Page, dashboard: Dashboard, worker: str) -> None:
    _open(page, worker)
    _tab(page, "Trace")
    page.get_by_label("max events").fill("20")
    page.get_by_label("seconds").fill("30")
    page.get_by_role("button", name="Start trace").click()
    expect(page.locator(".trace-status")).to_contain_text("running")
    sent = dashboard.api(
        "POST", f"/processes/{_path(worker)}/message", json={"message": {"$atom": "ping"}, "mode": "call"}
    )
    assert sent.status_code == 200, sent.text
    events = page.locator("table.trace-events")
    expect(events).to_contain_text("receive")
    expect(events).to_contain_text(":ping")
    expect(events).to_contain_text(":pong")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".trace-status")).to_contain_text("ended")
    # The trace is on the process's timeline.
    _tab(page, "History")
    expect(page.get_by_role("tabpanel")).to_contain_text(":ping")


def test_suspend_resume_and_gc_from_the_header(page: Page, worker: str) -> None:
    _open(page, worker)
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("[data-testid=status]")).to_have_text("suspended")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("[data-testid=status]")).not_to_have_text("suspended")
    page.get_by_role("button", name="GC").click()
    expect(page.get_by_role("status").filter(has_text="garbage collection")).to_contain_text("→")
