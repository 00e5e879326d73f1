"""A newcomer's whole path with nothing but the `contentline` CLI against the live stack: create a site, import a
keyword tool's export, configure, estimate, run to the review gate, review (approve, reject), publish, export,
read credits and history; and the refusals a person meets on the way (exit codes by kind, one-line errors)."""

from __future__ import annotations

import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from contentline_cli.session import EXIT_CONFLICT, EXIT_INVALID, EXIT_NOT_FOUND
from devstack.stack import Stack
from tests.cli_runner import cli, json_of, ok
from tests.helpers import TOPICS, Tenant

pytestmark = pytest.mark.e2e


def semrush_export(path: Path) -> Path:
    lines = ["Keyword,Intent,Volume,Keyword Difficulty,CPC (USD),SERP Features"]
    for head, mods in TOPICS[:3]:
        lines += [f'{head} {mod},Informational,{900 - 10 * i},{30 + i},0.{i + 1},"Reviews, Video"'
                  for i, mod in enumerate(mods[:3])]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_run_review_approve_publish_export_with_the_cli_only(
    stack: Stack, tenant: Tenant, tmp_path: Path
) -> None:
    key = tenant.key
    site = ok(cli(stack, "site", "create", "CLI walk", "--domain", "walk.example", key=key)).strip()
    imported = ok(cli(stack, "keywords", "import", site, str(semrush_export(tmp_path / "semrush.csv")), key=key))
    assert "9 imported" in imported and "SERP Features" in imported
    (first, *_) = json_of(cli(stack, "keywords", "list", site, "--json", key=key))["items"]
    assert first["intent"] == ["informational"] and first["cpc"] == 0.1 and first["currency"] == "USD"

    # config: one field, then the whole thing as a file; a bad value is one line naming the field
    ok(cli(stack, "config", "set", site, "batch_sizes.1", "5", key=key))
    config = json_of(cli(stack, "config", "show", site, "--json", key=key))["config"]
    assert config["batch_sizes"] == {"1": 5, "2": 1, "3": 20, "4": 1, "5": 1, "6": 1}
    edited = tmp_path / "config.json"
    edited.write_text(json.dumps(config | {"options": config["options"] | {"tone": "friendly"}}))
    assert "changed options" in ok(cli(stack, "config", "edit", site, "--file", str(edited), key=key))
    assert json_of(cli(stack, "config", "show", site, "--json", key=key))["config"]["options"]["tone"] == "friendly"
    bad = cli(stack, "config", "set", site, "timezone", "Mars/Base", key=key)
    assert bad.exit_code == EXIT_INVALID and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: timezone: ") and "Mars/Base" in bad.stderr

    estimate = json_of(cli(stack, "estimate", site, "--json", key=key))
    assert estimate["sufficient"] and float(estimate["total"]) > 0

    followed = cli(stack, "run", "start", site, "--follow", "--timeout", "300", "--interval", "1", key=key)
    assert followed.exit_code == 0, followed.stdout + followed.stderr
    assert "completed" in followed.stdout and "ready for review" in followed.stdout
    (run,) = json_of(cli(stack, "run", "history", site, "--json", key=key))["runs"]
    assert run["status"] == "completed"
    estimates = run["initial_snapshot"]["estimate"], run["revised_estimate"]
    start, revised = (f"{Decimal(e['total']):,.2f}" for e in estimates)
    assert f"Estimate: {start} credits at the start, {revised} after clustering" in followed.stdout
    assert ok(cli(stack, "run", "activity", run["run_id"], key=key)).strip()

    queue = json_of(cli(stack, "review", "queue", site, "--json", key=key))
    assert len(queue) >= 2, queue
    keep, drop = queue[0]["draft_id"], queue[1]["draft_id"]
    shown = ok(cli(stack, "review", "show", str(keep), "--body", key=key))
    assert queue[0]["title"][:20] in shown and "featured" in shown

    assert "approved" in ok(cli(stack, "review", "approve", str(keep), "--note", "good", key=key))
    again = cli(stack, "review", "approve", str(keep), key=key)
    assert again.exit_code == EXIT_CONFLICT and "already approved" in again.stderr
    assert "rejected" in ok(cli(stack, "review", "reject", str(drop), "-n", "too thin", key=key))
    assert "published" in ok(cli(stack, "review", "publish", str(keep), key=key))
    refused = cli(stack, "review", "publish", str(drop), key=key)
    assert refused.exit_code == EXIT_CONFLICT and "only approved drafts" in refused.stderr
    assert cli(stack, "review", "show", "999999999", key=key).exit_code == EXIT_NOT_FOUND

    # the export: the approved (now published) draft only, with its images and an index
    target = tmp_path / "site.zip"
    done = cli(stack, "export", "site", site, "-o", str(target), key=key)
    assert done.exit_code == 0 and "1 draft(s)" in done.stderr, done.stderr
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        index = json.loads(archive.read(f"contentline-site-{site}/index.json"))
        (entry,) = index["drafts"]
        folder = f"contentline-site-{site}/{entry['folder']}"
        markdown = archive.read(f"{folder}/article.md").decode()
        page = archive.read(f"{folder}/article.html").decode()
        pictures = [n for n in names if n.startswith(f"{folder}/images/")]
        assert entry["draft_id"] == keep and entry["decision"] == "published" and entry["missing_images"] == 0
        assert pictures and all(archive.read(n).startswith(b"\x89PNG") for n in pictures)
        assert all(f"images/{Path(n).name}" in markdown and f'src="images/{Path(n).name}"' in page for n in pictures)
        assert "index.csv" in " ".join(names) and "<script" not in page
    draft_zip = tmp_path / "draft.zip"
    assert ok(cli(stack, "export", "draft", str(drop), "-o", str(draft_zip), key=key)) == ""
    with zipfile.ZipFile(draft_zip) as archive:
        assert json.loads(archive.read(f"contentline-draft-{drop}/index.json"))["drafts"][0]["decision"] == "rejected"

    balance = json_of(cli(stack, "credits", "balance", "--json", key=key))
    ledger = json_of(cli(stack, "credits", "ledger", "--json", key=key))
    assert any(e["kind"] == "debit" and e["run_id"] == run["run_id"] for e in ledger)
    assert float(balance["balance"]) == float(ledger[0]["balance_after"])

    # everything is done: another run is refused with the reason, and nothing is started
    nothing = cli(stack, "run", "start", site, key=key)
    assert nothing.exit_code == EXIT_CONFLICT and "nothing to do" in nothing.stderr
    assert len(json_of(cli(stack, "run", "history", site, "--json", key=key))["runs"]) == 1
