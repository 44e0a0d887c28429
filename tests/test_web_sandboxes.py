"""exploration (temporary)"""
from __future__ import annotations
import json
from .browser import Dashboard

def test_explore(dashboard: Dashboard) -> None:
    def show(label, r):
        print("=====", label, r.status_code)
        print(json.dumps(r.json(), indent=1)[:6000])
    try:
        show("create", dashboard.api("POST", "/sandboxes", json={"sandbox_id": "explore1", "template": "worker_pool"}))
        show("list", dashboard.api("GET", "/sandboxes"))
        show("info", dashboard.api("GET", "/sandboxes/explore1"))
        show("versions", dashboard.api("GET", "/sandboxes/explore1/modules/WorkerPool.Worker/versions"))
        show("swap new", dashboard.api("POST", "/sandboxes/explore1/modules/Scratch/reload", json={"source": "defmodule Scratch do\n  def hi, do: :there\nend\n"}))
        show("swap bad", dashboard.api("POST", "/sandboxes/explore1/modules/Scratch/reload", json={"source": "defmodule Scratch do\n  def hi, do: :there\n  def oops(, do: 1\nend\n"}))
        show("swap undefined", dashboard.api("POST", "/sandboxes/explore1/modules/Scratch/reload", json={"source": "defmodule Scratch do\n  def hi, do: nope()\nend\n"}))
        show("swap policy", dashboard.api("POST", "/sandboxes/explore1/modules/Scratch/reload", json={"source": "defmodule Scratch do\n  def hi, do: System.cmd(\"ls\", [])\nend\n"}))
        show("versions2", dashboard.api("GET", "/sandboxes/explore1/modules/Scratch/versions"))
        show("rollback", dashboard.api("POST", "/sandboxes/explore1/modules/Scratch/rollback", json={"version": 1}))
        show("info2", dashboard.api("GET", "/sandboxes/explore1"))
    finally:
        show("delete", dashboard.api("DELETE", "/sandboxes/explore1"))
