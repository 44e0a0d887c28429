import json
from .browser import Dashboard

def test_dump(dashboard: Dashboard) -> None:
    out = {}
    for p in ["/applications", "/supervisors?limit=50", "/supervisors/*/tree?max_depth=3&max_nodes=200",
              "/supervisors/ArsenalDemo.ServiceSupervisor/children", "/supervisors/ArsenalDemo.ServiceSupervisor/flags",
              "/supervisors/ArsenalDemo.ServiceSupervisor/analytics?window=600&top=5", "/supervisors/ArsenalDemo.Supervisor/tree"]:
        r = dashboard.api("GET", p)
        out[p] = [r.status_code, r.json()]
    open("/tmp/supdump.json", "w").write(json.dumps(out, indent=1))
