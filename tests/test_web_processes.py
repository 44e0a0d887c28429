"""The process table in a real browser: sorting (by the VM), search, paging, the column picker,
suspend/resume/GC/kill on a process the test starts, the server's error for a process already
gone, keyboard access, and a viewer who sees no actions."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, Page, expect

from .browser import Dashboard, log_in, shot

TABLE = "table.proc-table"
# Waits on the node's answers: generous, as a loaded machine (parallel test runs) scans slowly.
ANSWER = 20_000


def open_table(page: Page, hash_: str = "#/processes") -> Locator:
    page.goto("/" + hash_)
    return settled(page)


def settled(page: Page) -> Locator:
    """The table once the rows shown answer the query shown (not an older one's)."""
    table = page.locator(TABLE)
    expect(table).to_have_attribute("aria-busy", "false", timeout=ANSWER)
    expect(table.locator("tbody tr").first).to_be_visible()
    return table


def column(page: Page, name: str) -> list[str]:
    """One column's cells, read at one moment (a refresh cannot mix two answers)."""
    return page.locator(f"{TABLE} tbody td[data-col={name}]").evaluate_all(
        "cells => cells.map(c => c.dataset.value ?? c.textContent)"
    )


def pids(page: Page) -> list[str]:
    return page.locator(f"{TABLE} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.pid)")


def spawn_sleeper(dashboard: Dashboard) -> str:
    answer = dashboard.api(
        "POST", "/processes", json={"module": "timer", "function": "sleep", "args": [600_000]}
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["data"]["pid"]


def show_timer_processes(page: Page) -> None:
    """Search by module: the sleepers this test starts run timer:sleep/1."""
    open_table(page)
    page.get_by_label("search in").select_option("module")
    page.locator("[data-search]").fill("timer")
    expect(page.locator(TABLE)).to_have_attribute("aria-busy", "false", timeout=ANSWER)


def test_the_table_sorted_by_memory_is_ranked_by_the_vm(page: Page, dashboard: Dashboard) -> None:
    table = open_table(page)
    expect(page.locator(".pager")).to_contain_text(re.compile(r"\d+ processes on"))
    # Rank by queue first, then click the Memory header back.
    table.get_by_role("button", name="Queue").click()
    expect(table.locator("th[aria-sort=descending]")).to_contain_text("Queue")
    expect(table).to_have_attribute("data-sort", "message_queue_len", timeout=ANSWER)
    queues = [int(v) for v in column(page, "message_queue_len")]
    assert queues == sorted(queues, reverse=True)
    table.get_by_role("button", name="Memory").click()
    expect(table.locator("th[aria-sort=descending]")).to_contain_text("Memory")
    expect(table).to_have_attribute("data-sort", "memory", timeout=ANSWER)
    memory = [int(v) for v in column(page, "memory")]
    assert len(memory) > 10 and memory == sorted(memory, reverse=True)
    assert "sort=memory" in page.url
    shot(page, "processes")

    # On the Erlang demo, demo_big_state (~2 MB of heap in its state) leads.
    page.get_by_label("node", exact=True).select_option(dashboard.erl.name)
    table = settled(page)
    expect(table.locator("tbody tr").first.locator("td[data-col=registered_name]")).to_have_text(
        "demo_big_state", timeout=ANSWER
    )
    memory = [int(v) for v in column(page, "memory")]
    assert memory == sorted(memory, reverse=True)


def test_the_window_sort_ranks_by_reductions_over_a_second(page: Page) -> None:
    table = open_table(page)
    table.get_by_role("button", name="Reds / 1 s").click()
    expect(table).to_have_attribute("data-sort", "window", timeout=ANSWER)
    expect(page.get_by_text("like arsenal top", exact=False)).to_be_visible()
    deltas = [int(v) for v in column(page, "reductions_delta")]
    assert deltas and deltas == sorted(deltas, reverse=True)
    shot(page, "processes-window")
    expect(page.locator("[data-search]")).to_be_disabled()  # the window op has no filters


def test_search_filters_by_name_and_by_module(page: Page) -> None:
    open_table(page)
    page.locator("body").press("/")  # the shell's shortcut focuses the page's search box
    expect(page.locator("[data-search]")).to_be_focused()
    page.keyboard.type("Counter")
    names = page.locator(f"{TABLE} tbody td[data-col=registered_name]")
    expect(names).to_have_count(2, timeout=ANSWER)  # ranked by memory: either may lead
    assert sorted(column(page, "registered_name")) == ["ArsenalDemo.Counter1", "ArsenalDemo.Counter2"]

    # By module, as the node prints it: the counters' StatefulWorker (their initial call).
    page.get_by_label("search in").select_option("module")
    page.locator("[data-search]").fill("ArsenalDemo.StatefulWorker")
    expect(page.locator(TABLE)).to_have_attribute("aria-busy", "false", timeout=ANSWER)
    expect(names.filter(has_text="ArsenalDemo.Counter1")).to_have_count(1, timeout=ANSWER)
    for call in column(page, "initial_call"):
        assert "StatefulWorker" in call

    page.locator("[data-search]").fill("NoSuchModuleAnywhere")
    expect(page.get_by_text("No process matches.")).to_be_visible(timeout=ANSWER)


def test_paging_moves_through_the_ranking(page: Page) -> None:
    open_table(page)
    page.get_by_label("rows per page").select_option("25")
    settled(page)
    first = pids(page)
    assert len(first) == 25
    page.get_by_role("button", name="Next →").click()
    expect(page.locator(".page-no")).to_have_text("page 2")
    settled(page)
    second = pids(page)
    assert second and second != first and len(set(second) - set(first)) > len(second) // 2
    page.get_by_role("button", name="← Previous").click()
    expect(page.locator(".page-no")).to_have_text("page 1")
    expect(page.get_by_role("button", name="← Previous")).to_be_disabled()


def test_the_columns_chosen_are_kept_across_a_reload(page: Page) -> None:
    table = open_table(page)
    expect(table.locator("th", has_text="Current function")).to_have_count(1)
    page.get_by_text("Columns", exact=True).click()
    page.get_by_role("group", name="columns").get_by_label("Current function").uncheck()
    expect(table.locator("th", has_text="Current function")).to_have_count(0)
    expect(table.locator("td[data-col=current_function]")).to_have_count(0)
    page.reload()
    table = settled(page)
    expect(table.locator("th", has_text="Current function")).to_have_count(0)
    expect(table.locator("th", has_text="Initial call")).to_have_count(1)


def test_rows_open_the_inspector_from_the_keyboard(page: Page) -> None:
    table = open_table(page)
    first = table.locator("tbody tr").first
    pid = first.get_attribute("data-pid")
    assert pid
    expect(first.locator("td.pid a")).to_have_attribute("href", re.compile(r"^#/process/"))
    first.focus()
    page.keyboard.press("Enter")
    encoded = pid.replace("<", "%3C").replace(">", "%3E")
    expect(page).to_have_url(re.compile(r"#/process/" + re.escape(encoded)))


def test_suspend_resume_and_kill_a_process(page: Page, dashboard: Dashboard) -> None:
    pid = spawn_sleeper(dashboard)
    show_timer_processes(page)
    row = page.locator(f'{TABLE} tr[data-pid="{pid}"]')
    status = row.locator("td[data-col=status]")
    expect(status).to_have_text("waiting", timeout=ANSWER)

    row.get_by_role("button", name="Suspend").click()
    expect(status).to_have_text("suspended", timeout=ANSWER)
    expect(page.locator(".processes [role=status]")).to_contain_text("suspended", timeout=ANSWER)
    info = dashboard.api("GET", f"/processes/{pid}", params={"fields": "status"}).json()
    assert info["data"]["info"]["status"].lstrip(":") == "suspended"  # Elixir prints :suspended

    row.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("waiting", timeout=ANSWER)

    row.get_by_role("button", name="GC").click()
    expect(page.locator(".processes [role=status]")).to_contain_text(
        f"Garbage-collected {pid}", timeout=ANSWER
    )

    row.get_by_role("button", name="Kill").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Kill {pid}?")
    shot(page, "processes-kill")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(row).to_have_count(1)  # cancelled: still there

    row.get_by_role("button", name="Kill").click()
    page.get_by_role("dialog").get_by_role("button", name="Kill").click()
    expect(row).to_have_count(0, timeout=ANSWER)
    expect(page.locator(".processes [role=status]")).to_contain_text(f"Killed {pid}", timeout=ANSWER)
    assert dashboard.api("GET", f"/processes/{pid}").status_code == 404


def test_a_process_gone_before_the_action_shows_the_servers_error(page: Page, dashboard: Dashboard) -> None:
    pid = spawn_sleeper(dashboard)
    show_timer_processes(page)
    page.get_by_role("button", name="Pause refresh").click()  # the row stays on screen
    row = page.locator(f'{TABLE} tr[data-pid="{pid}"]')
    expect(row).to_have_count(1)
    assert dashboard.api("DELETE", f"/processes/{pid}").status_code == 200
    row.get_by_role("button", name="Suspend").click()
    expect(page.locator(".processes [role=alert]")).to_contain_text("not alive", timeout=ANSWER)
    # The table keeps working: the dead row goes at the reload the action triggers.
    expect(row).to_have_count(0, timeout=ANSWER)
    expect(page.locator(TABLE)).to_have_attribute("aria-busy", "false", timeout=ANSWER)
    expect(page.locator(".pager")).to_contain_text(re.compile(r"\d+ processes on"))


def test_a_viewer_sees_no_actions(anonymous_page: Page, dashboard: Dashboard) -> None:
    page = anonymous_page
    log_in(page, dashboard.make_key("viewer", "web-processes-viewer")["key"])
    table = open_table(page)
    expect(table.locator("tbody tr")).not_to_have_count(0)
    for name in ("Kill", "Suspend", "Resume", "GC"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(table.locator("th", has_text="Actions")).to_have_count(0)


def test_a_node_with_300k_processes_is_sorted_by_the_vm_and_paged(
    page: Page, dashboard: Dashboard, make_node
) -> None:  # type: ignore[no-untyped-def]
    """The page holds one page of rows whatever the node holds: 300,000 processes are ranked in the
    VM, the table shows its page, and the page stays usable meanwhile (every action below would
    time out on a frozen page)."""
    big = make_node(
        "webbig",
        extra=[
            "+P",
            "1048576",
            "-eval",
            "[spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 300000)]",
        ],
    )
    attached = dashboard.api("POST", "/nodes", json={"name": big.name})
    assert attached.is_success, attached.text
    try:
        assert _process_count_reaches(dashboard, big.name, 300_000)  # the -eval spawns them after boot
        page.goto("/#/processes?sort=memory")
        page.get_by_label("node", exact=True).select_option(big.name)
        table = settled(page)
        expect(table).to_have_attribute("data-sort", "memory", timeout=ANSWER)
        expect(page.locator(".pager")).to_contain_text(re.compile(r"\d{3},\d{3} processes on"))
        rows = table.locator("tbody tr").count()
        assert 0 < rows <= 100  # one page, not the node's 300k
        memory = [int(v) for v in column(page, "memory")]
        assert memory == sorted(memory, reverse=True)
        page.get_by_role("button", name="Next").click()  # the next page, by the API's cursor
        settled(page)
        assert max(int(v) for v in column(page, "memory")) <= memory[-1]
    finally:
        dashboard.api("DELETE", f"/nodes/{big.name}")


def _process_count_reaches(dashboard: Dashboard, node: str, target: int) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = dashboard.api("GET", "/system/metrics", params={"node": node})
        if answer.is_success and answer.json()["data"]["process_count"] >= target:
            return True
        time.sleep(0.5)
    return False
