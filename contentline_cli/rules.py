"""`contentline rules ...`: a site's automation rules (create from a JSON file or options, list, show, enable,
disable, delete), run one now, test its conditions, and the scheduled-task history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from contentline_cli.session import client_for, console

rules_app = typer.Typer(no_args_is_help=True, help="Automation rules of a site and their executions.")

ACTIONS = "generate_ideas, generate_content, start_run, notify"


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from exc


def _rule_line(rule: dict[str, Any]) -> str:
    state = "[green]active[/]" if rule["is_active"] else "[yellow]inactive[/]"
    when = f" cron '{rule['schedule']['cron']}' {rule['schedule']['timezone']}" if rule.get("schedule") else ""
    return (
        f"[bold]{rule['name']}[/] ({rule['id']}) {state}: on {rule['trigger']}{when}; "
        f"{len(rule['conditions'])} conditions; actions {', '.join(a['type'] for a in rule['actions'])}; "
        f"{rule['executions_today']}/{rule['max_executions_per_day']} today, "
        f"credit limit {rule['credit_limit_per_execution']}"
    )


@rules_app.command("list")
def list_rules(ctx: typer.Context, site_id: str) -> None:
    """The site's rules."""
    with client_for(ctx) as client:
        for rule in client.rules(site_id):
            console.print(_rule_line(rule))


@rules_app.command("show")
def show(ctx: typer.Context, rule_id: str) -> None:
    """One rule as JSON."""
    with client_for(ctx) as client:
        console.print_json(json.dumps(client.rule(rule_id)))


@rules_app.command("create")
def create(
    ctx: typer.Context,
    site_id: str,
    name: Annotated[str | None, typer.Option(help="Rule name (unless --file).")] = None,
    trigger: Annotated[str | None, typer.Option(help="schedule or an entity event, e.g. cluster_created.")] = None,
    action: Annotated[list[str] | None, typer.Option("--action", help=f"An action type ({ACTIONS}); repeat.")] = None,
    condition: Annotated[
        list[str] | None, typer.Option("--when", help="A condition 'FIELD OPERATOR JSON-VALUE', e.g. 'size gte 5'.")
    ] = None,
    cron: Annotated[str | None, typer.Option(help="Cron expression of a schedule rule.")] = None,
    timezone: Annotated[str, typer.Option(help="Time zone of the cron expression.")] = "UTC",
    max_per_day: Annotated[int | None, typer.Option(help="max_executions_per_day (default 10).")] = None,
    credit_limit: Annotated[str | None, typer.Option(help="credit_limit_per_execution (default 100).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="The whole rule as a JSON file.")] = None,
) -> None:
    """Create a rule from a JSON file, or from options (actions without parameters act on the event's item)."""
    if file is not None:
        spec: dict[str, Any] = _json(file.read_text(encoding="utf-8"), str(file))
    else:
        spec = {"name": name, "trigger": trigger, "actions": [{"type": a} for a in action or []]}
        spec["conditions"] = []
        for text in condition or []:
            parts = text.split(maxsplit=2)
            if len(parts) != 3:
                raise typer.BadParameter(
                    f"'{text}': expected FIELD OPERATOR VALUE, e.g. 'size gte 5'", param_hint="--when"
                )
            field, op, value = parts
            spec["conditions"].append({"field": field, "operator": op, "value": _json(value, f"value of '{text}'")})
        if cron:
            spec["schedule"] = {"cron": cron, "timezone": timezone}
        if max_per_day is not None:
            spec["max_executions_per_day"] = max_per_day
        if credit_limit is not None:
            spec["credit_limit_per_execution"] = credit_limit
    with client_for(ctx) as client:
        console.print(_rule_line(client.create_rule(site_id, spec)))


def _set_active(ctx: typer.Context, rule_id: str, active: bool) -> None:
    with client_for(ctx) as client:
        console.print(_rule_line(client.update_rule(rule_id, {"is_active": active})))


@rules_app.command("enable")
def enable(ctx: typer.Context, rule_id: str) -> None:
    _set_active(ctx, rule_id, True)


@rules_app.command("disable")
def disable(ctx: typer.Context, rule_id: str) -> None:
    _set_active(ctx, rule_id, False)


@rules_app.command("delete")
def delete(ctx: typer.Context, rule_id: str) -> None:
    """Delete a rule and its history (runs it started go on)."""
    with client_for(ctx) as client:
        client.delete_rule(rule_id)
    console.print(f"deleted {rule_id}")


@rules_app.command("execute")
def execute(ctx: typer.Context, rule_id: str) -> None:
    """Run a rule now (its daily and credit limits apply)."""
    with client_for(ctx) as client:
        task = client.execute_rule(rule_id)
    reason = f": {task['error_message']}" if task.get("error_message") else ""
    run = f", run {task['run_id']}" if task.get("run_id") else ""
    console.print(f"task {task['id']} {task['status']}{reason}{run}")


@rules_app.command("test")
def test(
    ctx: typer.Context,
    rule_id: str,
    sample: Annotated[str | None, typer.Option(help="Entity fields as JSON (default: the latest event).")] = None,
) -> None:
    """Evaluate the rule's conditions; nothing is executed."""
    with client_for(ctx) as client:
        result = client.test_rule(rule_id, _json(sample, "--sample") if sample else None)
    for outcome in result["conditions"]:
        c = outcome["condition"]
        mark = "[green]holds[/]" if outcome["holds"] else "[red]fails[/]"
        console.print(f"{c['field']} {c['operator']} {json.dumps(c['value'])}: {mark} (actual {outcome['actual']!r})")
    verdict = "met" if result["conditions_met"] else "not met"
    why = f"; would skip: {result['would_skip_because']}" if result["would_skip_because"] else ""
    console.print(f"conditions {verdict} against the {result['sample_source']} sample{why}")


@rules_app.command("history")
def history(
    ctx: typer.Context,
    site_id: str,
    rule: Annotated[str | None, typer.Option(help="Only this rule's executions.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, running, completed, failed or skipped.")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    size: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """The site's scheduled tasks (rule executions), newest first."""
    with client_for(ctx) as client:
        found = client.scheduled_tasks(site_id, rule_id=rule, status=status, page=page, size=size)
    table = Table(box=box.SIMPLE_HEAD, title=f"{found['total']} scheduled tasks (page {found['page']})")
    for column in ("id", "rule", "trigger", "status", "scheduled", "executed", "credits", "run", "reason"):
        table.add_column(column)
    for t in found["items"]:
        table.add_row(
            str(t["id"]),
            t["rule_id"],
            t["trigger"],
            t["status"],
            t["scheduled_at"][:19],
            (t["executed_at"] or "")[:19],
            str(t["credits_used"]),
            t["run_id"] or "",
            t["error_message"] or "",
        )
    console.print(table)
