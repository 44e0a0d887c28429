"""The Sandboxes page in a real browser: create from a template, the REPL, hot swap with its report
and compile errors, versions and rollback, a sandbox that hits its lifetime, destroy."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .browser import Dashboard, log_in, shot

# A whole new WorkerPool.Worker: the same messages as the template's, plus `version/0` and a
# code_change/3 that marks the state, so the report shows per-process results.
NEW_WORKER = """defmodule WorkerPool.Worker do
  use GenServer

  def start_link(args), do: GenServer.start_link(__MODULE__, args)

  @impl true
  def init(args), do: {:ok, %{index: Keyword.fetch!(args, :index), jobs_done: 0}}

  def version, do: 2

  def run(job) when is_function(job, 0), do: {:ok, job.()}
  def run(term), do: {:ok, term}

  @impl true
  def handle_cast({:run, job, reply_to}, state) do
    {status, result} = run(job)
    GenServer.reply(reply_to, {status, result, state.index})
    {:noreply, %{state | jobs_done: state.jobs_done + 1}}
  end

  @impl true
  def handle_call(:jobs_done, _from, state), do: {:reply, state.jobs_done, state}
  def handle_call(:swapped?, _from, state), do: {:reply, Map.get(state, :swapped, false), state}

  @impl true
  def code_change(_old, state, _extra), do: {:ok, Map.put(state, :swapped, true)}
end
"""

BROKEN = """defmodule WorkerPool.Worker do
  def version, do: 3
  def oops, do: undefined_here()
end
"""


@pytest.fixture
def sandboxes(dashboard: Dashboard) -> Iterator[list[str]]:
    """Ids of the sandboxes a test creates: each is destroyed afterwards, whatever happened."""
    ids: list[str] = []
    yield ids
    for sandbox_id in ids:
        dashboard.api("DELETE", f"/sandboxes/{sandbox_id}")


def listed(dashboard: Dashboard) -> dict[str, dict[str, object]]:
    answer = dashboard.api("GET", "/sandboxes")
    assert answer.status_code == 200
    return {s["sandbox_id"]: s for s in answer.json()["data"]["sandboxes"]}


def repl_eval(page: Page, code: str) -> None:
    field = page.get_by_label("REPL input")
    field.fill(code)
    field.press("Enter")


def test_create_repl_hot_swap_rollback_and_destroy(
    page: Page, dashboard: Dashboard, sandboxes: list[str]
) -> None:
    sandboxes.append("webpool")
    page.goto(dashboard.url + "/#/sandboxes")
    form = page.get_by_role("form", name="create a sandbox")
    form.get_by_label("id").fill("webpool")
    form.get_by_label("template").select_option("worker_pool")
    form.get_by_role("button", name="Create sandbox").click()
    row = page.locator("table[aria-label=sandboxes] tr[data-sandbox=webpool]")
    expect(row).to_contain_text("running", timeout=60_000)
    expect(row).to_contain_text("worker_pool")
    expect(row).to_contain_text("1024 MiB")  # its limits
    assert listed(dashboard)["webpool"]["status"] == "running"
    shot(page, "sandboxes")

    # Open it: usage, and the application tree read from the sandbox.
    row.get_by_role("link", name="webpool").click()
    expect(page.get_by_role("heading", name="Sandbox webpool")).to_be_visible()
    expect(page.get_by_label("application tree")).to_contain_text("WorkerPool", timeout=30_000)
    expect(page.get_by_role("meter", name="processes")).to_be_visible()
    shot(page, "sandbox-overview")

    # The REPL: arithmetic, the template's own API, bindings kept, history with the up key.
    page.get_by_role("tab", name="REPL").click()
    expect(page.locator(".sbx-repl [role=status]")).to_have_text("connected", timeout=30_000)
    transcript = page.get_by_label("REPL output")
    repl_eval(page, "1 + 2")
    expect(transcript.locator(".sbx-value").last).to_have_text("3")
    repl_eval(page, "x = WorkerPool.Dispatcher.run(fn -> 6 * 7 end)")
    expect(transcript.locator(".sbx-value").last).to_have_text(re.compile(r"\{:ok, 42, \d\}"))
    repl_eval(page, "elem(x, 1) + 1")
    expect(transcript.locator(".sbx-value").last).to_have_text("43")
    repl_eval(page, 'raise "boom"')
    expect(transcript.locator(".sbx-error").last).to_contain_text("boom")
    field = page.get_by_label("REPL input")
    field.press("ArrowUp")
    expect(field).to_have_value('raise "boom"')
    field.press("ArrowUp")
    expect(field).to_have_value("elem(x, 1) + 1")
    field.press("ArrowDown")
    field.press("ArrowDown")
    expect(field).to_have_value("")
    field.fill("WorkerPool.Disp")  # Tab completes from the sandbox's loaded modules
    field.press("Tab")
    expect(field).to_have_value("WorkerPool.Dispatcher")
    field.fill("")
    shot(page, "sandbox-repl")

    # Hot swap the template's worker: four processes run code_change and keep their state.
    page.get_by_role("tab", name="Code & hot swap").click()
    modules = page.get_by_role("table", name="modules")
    modules.locator("tr", has_text="WorkerPool.Worker").get_by_role("button", name="edit").click()
    expect(page.get_by_label("module", exact=True)).to_have_value("WorkerPool.Worker")
    # The module's current source, as Arsenal loaded it (not a shell): its callbacks are there.
    expect(page.get_by_label("module source")).to_have_value(
        re.compile(r"^defmodule WorkerPool\.Worker do.*def handle_call", re.S)
    )
    page.get_by_label("module source").fill(NEW_WORKER)
    page.get_by_role("button", name="Hot swap").click()
    report = page.get_by_role("status", name="hot swap report")
    expect(report).to_contain_text("WorkerPool.Worker v2 loaded", timeout=60_000)
    expect(report).to_contain_text("version/0")
    processes = report.get_by_role("table", name="processes of the module").locator("tbody tr")
    expect(processes).to_have_count(4)
    for i in range(4):
        expect(processes.nth(i)).to_contain_text("ok")
        expect(processes.nth(i).locator("td").nth(3)).to_have_text("yes")
    shot(page, "sandbox-hot-swap")

    # The new code runs in the same processes (the REPL session is still there, with x).
    page.get_by_role("tab", name="REPL").click()
    repl_eval(page, "{WorkerPool.Worker.version(), elem(x, 1)}")
    expect(transcript.locator(".sbx-value").last).to_have_text("{2, 42}")

    # A compile error: the line from the server, the running version untouched.
    page.get_by_role("tab", name="Code & hot swap").click()
    page.get_by_label("module source").fill(BROKEN)
    page.get_by_role("button", name="Hot swap").click()
    error = page.locator(".sbx-swap-error")
    expect(error).to_contain_text("Not loaded (compile)", timeout=60_000)
    expect(error).to_contain_text(re.compile(r"Worker\.ex:3"))
    expect(error).to_contain_text("undefined function undefined_here/0")
    shot(page, "sandbox-compile-error")

    # Versions and rollback: v1 (initial), v2 (hot swap); rolling back records v3.
    modules.get_by_role("button", name="WorkerPool.Worker").click()
    versions = page.get_by_role("table", name="versions").locator("tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.nth(1)).to_contain_text("(current)")
    page.get_by_role("button", name="roll back to v1").click()
    expect(report).to_contain_text("WorkerPool.Worker v3 loaded", timeout=60_000)
    expect(versions).to_have_count(3)
    expect(versions.nth(2)).to_contain_text("rollback to v1")
    page.get_by_role("tab", name="REPL").click()
    repl_eval(page, "function_exported?(WorkerPool.Worker, :version, 0)")
    expect(transcript.locator(".sbx-value").last).to_have_text("false")

    # Destroy: asks first; cancel keeps it, confirm removes it.
    page.get_by_role("button", name="Destroy").click()
    dialog = page.get_by_role("dialog", name="Destroy sandbox webpool?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert "webpool" in listed(dashboard)
    page.get_by_role("button", name="Destroy").click()
    page.get_by_role("dialog").get_by_role("button", name="Destroy").click()
    expect(page).to_have_url(re.compile(r"#/sandboxes$"))
    expect(page.locator("tr[data-sandbox=webpool]")).to_have_count(0)
    assert "webpool" not in listed(dashboard)


def test_a_sandbox_that_hits_its_lifetime_shows_why(
    page: Page, dashboard: Dashboard, sandboxes: list[str]
) -> None:
    sandboxes.append("webshort")
    spec = {"sandbox_id": "webshort", "language": "erlang", "limits": {"lifetime_s": 10}}
    created = dashboard.api("POST", "/sandboxes", json=spec)
    assert created.status_code == 200, created.text
    page.goto(dashboard.url + "/#/sandboxes/webshort")
    expect(page.get_by_role("heading", name="Sandbox webshort")).to_be_visible()
    alert = page.locator(".sbx-stopped")
    expect(alert).to_contain_text("lifetime", timeout=40_000)
    expect(page.get_by_label("REPL input")).to_be_disabled()
    page.get_by_role("link", name="← sandboxes").click()
    expect(page.locator("tr[data-sandbox=webshort]")).to_contain_text("lifetime")

    # Restart (destructive: asks first) gives a fresh node.
    page.get_by_role("link", name="webshort").click()
    page.get_by_role("button", name="Restart").click()
    page.get_by_role("dialog", name="Restart sandbox webshort?").get_by_role("button", name="Restart").click()
    expect(alert).to_be_hidden(timeout=30_000)
    expect(page.locator(".sandbox .toolbar .sbx-status")).to_have_text("running")


def test_the_other_templates_start_and_the_list_destroys(
    page: Page, dashboard: Dashboard, sandboxes: list[str]
) -> None:
    page.goto(dashboard.url + "/#/sandboxes")
    form = page.get_by_role("form", name="create a sandbox")
    for template in ("pubsub", "pipeline", "cascade"):
        sandbox_id = f"web{template}"
        sandboxes.append(sandbox_id)
        form.get_by_label("id").fill(sandbox_id)
        form.get_by_label("template").select_option(template)
        form.get_by_role("button", name="Create sandbox").click()
        row = page.locator(f"tr[data-sandbox={sandbox_id}]")
        expect(row).to_contain_text("running", timeout=60_000)
        expect(row).to_contain_text(template)
    page.locator("tr[data-sandbox=webcascade]").get_by_role("button", name="destroy").click()
    dialog = page.get_by_role("dialog", name="Destroy sandbox webcascade?")
    dialog.get_by_role("button", name="Destroy").click()
    expect(page.locator("tr[data-sandbox=webcascade]")).to_have_count(0)
    assert "webcascade" not in listed(dashboard)
    assert {"webpubsub", "webpipeline"} <= set(listed(dashboard))


def test_bad_input_shows_the_servers_message(page: Page, dashboard: Dashboard, sandboxes: list[str]) -> None:
    page.goto(dashboard.url + "/#/sandboxes")
    form = page.get_by_role("form", name="create a sandbox")
    form.get_by_label("id").fill("weblimits")
    form.get_by_role("button", name="limits…").click()
    form.get_by_label("lifetime s").fill("5")  # below the server's minimum of 10
    form.get_by_role("button", name="Create sandbox").click()
    expect(form.get_by_role("alert")).to_contain_text("lifetime_s")
    assert "weblimits" not in listed(dashboard)
    page.goto(dashboard.url + "/#/sandboxes/nosuchbox")
    expect(page.get_by_role("alert").first).to_contain_text("nosuchbox")


def test_a_destroyed_sandbox_says_so(page: Page, dashboard: Dashboard, sandboxes: list[str]) -> None:
    sandboxes.append("webgone")
    created = dashboard.api("POST", "/sandboxes", json={"sandbox_id": "webgone", "language": "erlang"})
    assert created.status_code == 200, created.text
    page.goto(dashboard.url + "/#/sandboxes/webgone?tab=repl")
    expect(page.locator(".sbx-repl [role=status]")).to_have_text("connected", timeout=30_000)
    repl_eval(page, "lists:seq(1, 3).")  # an Erlang sandbox's REPL
    expect(page.get_by_label("REPL output").locator(".sbx-value").last).to_have_text("[1,2,3]")
    assert dashboard.api("DELETE", "/sandboxes/webgone").status_code == 200
    expect(page.get_by_text("The sandbox no longer exists")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("button", name="Destroy")).to_have_count(0)


def test_a_viewer_sees_sandboxes_but_no_actions(
    anonymous_page: Page, dashboard: Dashboard, sandboxes: list[str]
) -> None:
    sandboxes.append("webview")
    created = dashboard.api("POST", "/sandboxes", json={"sandbox_id": "webview", "language": "erlang"})
    assert created.status_code == 200, created.text
    page = anonymous_page
    log_in(page, dashboard.make_key("viewer", "web-sandbox-viewer")["key"])
    page.goto(dashboard.url + "/#/sandboxes")
    expect(page.locator("tr[data-sandbox=webview]")).to_contain_text("running")
    expect(page.get_by_role("form", name="create a sandbox")).to_have_count(0)
    expect(page.get_by_role("button", name="destroy")).to_have_count(0)
    page.get_by_role("link", name="webview").click()
    expect(page.get_by_role("heading", name="Sandbox webview")).to_be_visible()
    expect(page.get_by_role("button", name="Destroy")).to_have_count(0)
    page.get_by_role("tab", name="REPL").click()
    expect(page.get_by_text("The REPL runs code: it needs an operator or admin key.")).to_be_visible()
