"""A run with nothing to do is refused with the reason (409), through the API and the CLI, and no run is left
behind (it used to "complete" with 1/0)."""

from __future__ import annotations

import httpx

from contentline_cli.session import EXIT_CONFLICT
from devstack.stack import Stack
from tests.cli_runner import cli
from tests.helpers import Tenant, configure, create_site, import_keywords


def test_starting_a_run_with_nothing_pending_is_refused_with_the_reason(
    stack: Stack, api: httpx.Client, tenant: Tenant
) -> None:
    site = create_site(api)
    r = api.post(f"/sites/{site}/runs")
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["type"].endswith("nothing-pending") and "import keywords" in body["detail"]
    assert body["pending"] == {str(s): 0 for s in range(1, 8)}
    assert api.get(f"/sites/{site}/runs").json()["total"] == 0  # nothing was started and rolled back
    assert api.get(f"/sites/{site}/runs/current").json() is None

    refused = cli(stack, "run", "start", site, key=tenant.key)
    assert refused.exit_code == EXIT_CONFLICT and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: nothing to do: no keyword awaits clustering") and line.endswith("(HTTP 409)")


def test_pending_items_only_at_disabled_stages_are_named(api: httpx.Client) -> None:
    site = create_site(api)
    import_keywords(api, site, [{"keyword": "waiting keyword"}])
    configure(api, site, stage_enabled={"1": False})
    r = api.post(f"/sites/{site}/runs")
    assert r.status_code == 409 and "stage 1 (keywords → clusters) has 1" in r.json()["detail"], r.text
    configure(api, site, stage_enabled={"1": True, "2": False, "3": False, "4": False, "5": False, "6": False})
    started = api.post(f"/sites/{site}/runs")
    assert started.status_code == 201, started.text  # with the stage enabled it runs
