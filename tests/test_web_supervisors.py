"""The supervision tree explorer (#/supervisors) in a real browser, on the Elixir demo node.

ArsenalDemo.Supervisor (one_for_one) → PairSupervisor (one_for_all: Counter1, Counter2),
ServiceSupervisor (rest_for_one: pool → events → cascade), DynamicWorkers, LoadGenerator.
Killing :arsenal_demo_cascade (the last of a rest_for_one) restarts only itself: the shared
node is left as it was, bar a new pid.
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from .browser import Dashboard, log_in, shot

SERVICE = "ArsenalDemo.ServiceSupervisor"
CASCADE = ":arsenal_demo_cascade"


def node(page: Page, name: str) -> Locator:
    return page.locator(f'svg.sup-svg g.node[data-name="{name}"]')


def open_page(page: Page) -> None:
    page.goto("/#/supervisors")
    expect(node(page, "ArsenalDemo.Supervisor")).to_be_visible()


def unfold(page: Page, name: str) -> None:
    target = node(page, name)
    if target.get_attribute("aria-expanded") != "true":
        target.locator(".toggle").click()
    expect(target).to_have_attribute("aria-expanded", "true")


def test_the_tree_shows_the_demo_applications_supervisors(page: Page) -> None:
    open_page(page)
    expect(node(page, "arsenal_demo")).to_be_visible()  # the application above its tree
    for name in (
        "ArsenalDemo.PairSupervisor",
        SERVICE,
        "ArsenalDemo.DynamicWorkers",
        "ArsenalDemo.LoadGenerator",
    ):
        expect(node(page, name)).to_be_visible()
    expect(node(page, ":kernel_sup")).to_be_visible()  # the runtime's own applications too
    # Strategy and the intensity/period from the supervisor's flags on the node itself.
    expect(node(page, SERVICE).locator(".sub")).to_contain_text(re.compile(r"rest_for_one · 5/10s"))
    expect(node(page, "ArsenalDemo.PairSupervisor").locator(".sub")).to_contain_text("one_for_all")


def test_a_supervisor_unfolds_and_folds_with_mouse_and_keyboard(page: Page) -> None:
    open_page(page)
    service = node(page, SERVICE)
    # Deep levels start folded: the workers under ServiceSupervisor are not drawn.
    expect(service).to_have_attribute("aria-expanded", "false")
    expect(node(page, CASCADE)).to_have_count(0)
    service.locator(".toggle").click()
    for name in (":arsenal_demo_pool", ":arsenal_demo_events", CASCADE):
        expect(node(page, name)).to_be_visible()
    service.locator(".toggle").click()
    expect(node(page, CASCADE)).to_have_count(0)
    # The keyboard: focus the node, → unfolds, ← folds, Enter selects.
    service.focus()
    page.keyboard.press("ArrowRight")
    expect(node(page, ":arsenal_demo_pool")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(node(page, ":arsenal_demo_pool")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.get_by_label("selected node")).to_contain_text(f"supervisor {SERVICE}")


def test_zoom_buttons_and_the_wheel_change_the_transform(page: Page) -> None:
    open_page(page)
    viewport = page.locator("svg.sup-svg g.viewport")
    before = viewport.get_attribute("transform")
    assert before and "scale(1.000)" in before
    page.get_by_role("button", name="Zoom in").click()
    expect(viewport).to_have_attribute("transform", re.compile(r"scale\(1\.250\)"))
    page.get_by_role("button", name="Zoom out").click()
    page.get_by_role("button", name="Zoom out").click()
    expect(viewport).to_have_attribute("transform", re.compile(r"scale\(0\.800\)"))
    box = page.locator("svg.sup-svg").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 40)
    page.mouse.wheel(0, -200)
    expect(viewport).not_to_have_attribute("transform", re.compile(r"scale\(0\.800\)"))
    # Dragging the background pans.
    zoomed = viewport.get_attribute("transform")
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + box["height"] - 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 130, box["y"] + box["height"] - 80, steps=5)
    page.mouse.up()
    expect(viewport).not_to_have_attribute("transform", zoomed or "")


def test_killing_a_child_shows_its_new_pid_a_flash_and_the_restart_count(
    page: Page, dashboard: Dashboard
) -> None:
    old = _child_pid(dashboard, CASCADE)
    assert old
    open_page(page)
    unfold(page, SERVICE)
    cascade = node(page, CASCADE)
    expect(cascade).to_have_attribute("data-pid", old)
    cascade.locator(".label").click()
    side = page.get_by_label("selected node")
    expect(side).to_contain_text(old)
    side.get_by_role("button", name="Simulate failure…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("exit reason").select_option("kill")
    dialog.get_by_role("button", name="Kill it").click()
    expect(side.get_by_role("status")).to_contain_text("restarted: :arsenal_demo_cascade")
    # The next poll sees the new pid: the node flashes and counts the restart, as does its supervisor.
    expect(cascade).not_to_have_attribute("data-pid", old)
    expect(cascade).to_have_class(re.compile(r"\bflash\b"))
    expect(cascade).to_have_attribute("data-restarts", "1")
    expect(node(page, SERVICE)).to_have_attribute("data-restarts", "1")
    expect(node(page, SERVICE).locator(".sub")).to_contain_text("↻1")
    new = _child_pid(dashboard, CASCADE)
    assert new and new != old
    expect(cascade).to_have_attribute("data-pid", new)
    expect(side).to_contain_text(new)  # the panel follows the restarted child
    # The worker links to its inspector.
    expect(side.get_by_role("link", name=new)).to_have_attribute("href", re.compile(r"^#/process/"))
    shot(page, "supervisors")


def test_a_kill_from_outside_the_page_is_seen_too(page: Page, dashboard: Dashboard) -> None:
    open_page(page)
    unfold(page, SERVICE)
    cascade = node(page, CASCADE)
    old = _child_pid(dashboard, CASCADE)
    assert old
    expect(cascade).to_have_attribute("data-pid", old)
    assert dashboard.api("DELETE", f"/processes/{old}").status_code == 200
    expect(cascade).not_to_have_attribute("data-pid", old)
    expect(cascade).to_have_attribute("data-restarts", "1")


def test_terminating_a_child_then_starting_it_again(page: Page, dashboard: Dashboard) -> None:
    open_page(page)
    unfold(page, SERVICE)
    cascade = node(page, CASCADE)
    cascade.locator(".label").click()
    side = page.get_by_label("selected node")
    try:
        side.get_by_role("button", name="Terminate child…").click()
        page.get_by_role("dialog").get_by_role("button", name="Terminate").click()
        expect(side.get_by_role("status")).to_contain_text("terminated")
        expect(cascade).to_have_class(re.compile(r"\bst-undefined\b"))  # drawn as stopped
        expect(side).to_contain_text("none (undefined)")
        side.get_by_role("button", name="Start child").click()  # restart_child: write, no confirmation
        expect(side.get_by_role("status")).to_contain_text("started as <")
        expect(cascade).to_have_class(re.compile(r"\bst-running\b"))
    finally:
        if _child_pid(dashboard, CASCADE) is None:
            dashboard.api("POST", f"/supervisors/{SERVICE}/children/arsenal_demo_cascade/restart")
    assert _child_pid(dashboard, CASCADE) is not None


def test_changing_a_strategy_and_back(page: Page, dashboard: Dashboard) -> None:
    open_page(page)
    node(page, SERVICE).locator(".label").click()
    side = page.get_by_label("selected node")
    try:
        side.get_by_label("new strategy").select_option("one_for_one")
        side.get_by_role("button", name="Change strategy").click()
        expect(side.get_by_role("status")).to_contain_text("rest_for_one → one_for_one")
        expect(node(page, SERVICE).locator(".sub")).to_contain_text("one_for_one")
        assert _flags(dashboard, SERVICE)["strategy"] == "one_for_one"
        side.get_by_label("new strategy").select_option("rest_for_one")
        side.get_by_role("button", name="Change strategy").click()
        expect(side.get_by_role("status")).to_contain_text("one_for_one → rest_for_one")
        expect(node(page, SERVICE).locator(".sub")).to_contain_text("rest_for_one")
    finally:
        if _flags(dashboard, SERVICE)["strategy"] != "rest_for_one":
            dashboard.api("PUT", f"/supervisors/{SERVICE}/strategy", json={"strategy": "rest_for_one"})
    assert _flags(dashboard, SERVICE)["strategy"] == "rest_for_one"


def test_the_resource_overlay_sizes_nodes(page: Page) -> None:
    open_page(page)
    unfold(page, SERVICE)
    glyph = node(page, ":arsenal_demo_events").locator("circle")
    expect(glyph).to_have_attribute("r", "7")
    expect(glyph).not_to_have_attribute("style", re.compile("fill"))
    page.get_by_label("resource overlay").select_option("memory")
    # Coloured (and sized) by its share of the largest process's memory.
    expect(glyph).to_have_attribute("style", re.compile(r"fill: rgb"))
    expect(page.locator(".sup-page > .toolbar")).to_contain_text("overlay: largest")


def test_a_viewer_sees_the_tree_but_no_actions(anonymous_page: Page, dashboard: Dashboard) -> None:
    page = anonymous_page
    log_in(page, dashboard.make_key("viewer", "web-sup-viewer")["key"])
    open_page(page)
    unfold(page, SERVICE)
    node(page, CASCADE).locator(".label").click()
    side = page.get_by_label("selected node")
    expect(side).to_contain_text("Read-only session")
    expect(side.get_by_role("button", name=re.compile("Simulate|Terminate|Restart"))).to_have_count(0)
    node(page, SERVICE).locator(".label").click()
    expect(side).to_contain_text("rest_for_one")
    expect(side.get_by_role("button", name="Change strategy")).to_have_count(0)


def _child_pid(dashboard: Dashboard, name: str) -> str | None:
    children = dashboard.api("GET", f"/supervisors/{SERVICE}/children").json()["data"]["children"]
    return next(c["pid"] for c in children if c["name"] == name)


def _flags(dashboard: Dashboard, name: str) -> dict[str, object]:
    return dashboard.api("GET", f"/supervisors/{name}/flags").json()["data"]


def test_a_plain_erlang_nodes_tree(page: Page, dashboard: Dashboard) -> None:
    page.get_by_label("node", exact=True).select_option(dashboard.erl.name)
    page.goto("/#/supervisors")
    # Its demo supervisor was started outside any application: under "(no application)".
    expect(node(page, "(no application)")).to_be_visible()
    expect(node(page, "arsenal_demo_erl_sup")).to_be_visible()
    expect(node(page, "arsenal_demo_erl_sup").locator(".sub")).to_contain_text("one_for_one")
    expect(node(page, "kernel_sup")).to_be_visible()  # Erlang syntax: no leading colon
