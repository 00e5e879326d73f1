"""`contentline site ...`, `keywords ...`, `config ...` and `shares ...`: sites, their keyword catalogue (import,
list with the research tools' figures, CSV export), the automation config (show, set one field, edit as a
file) and budget shares."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from contentline_cli.follow import create_site, print_import_result
from contentline_cli.session import (
    EXIT_USAGE,
    JsonOption,
    cell,
    client_for,
    console,
    err_console,
    fail,
    fields,
    print_json,
    table,
)

site_app = typer.Typer(no_args_is_help=True, help="Sites (the unit keywords and runs belong to).")
keywords_app = typer.Typer(no_args_is_help=True, help="A site's keywords: import, list (with the tools' data), export.")
config_app = typer.Typer(no_args_is_help=True, help="A site's automation config: show, set one field, edit as a file.")
shares_app = typer.Typer(no_args_is_help=True, help="Budget shares per AI function (a site's, or the global ones).")

PageOption = Annotated[int, typer.Option(min=1, help="Page number (1-based).")]


# ---------------------------------------------------------------------- sites
@site_app.command("create")
def site_create(
    ctx: typer.Context, name: str,
    domain: Annotated[str | None, typer.Option(help="The site's domain, e.g. example.com.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a site; prints its id on stdout."""
    with client_for(ctx) as client:
        if as_json:
            print_json(client.call("POST", "/sites", json={"name": name, "domain": domain}))
            return
        site = create_site(client, name, domain, out=err_console)
    print(site.id)


@site_app.command("list")
def site_list(ctx: typer.Context, page: PageOption = 1,
              size: Annotated[int, typer.Option(min=1, max=500)] = 50, as_json: JsonOption = False) -> None:
    """The account's sites."""
    with client_for(ctx) as client:
        data = client.call("GET", "/sites", params={"page": page, "size": size})
    print_json(data) if as_json else table(data, ["id", "name", "domain", "created_at"], empty="no sites yet")


@site_app.command("show")
def site_show(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """A site, its current run and what is pending at each stage."""
    with client_for(ctx) as client:
        site = client.call("GET", f"/sites/{site_id}")
        current = client.call("GET", f"/sites/{site_id}/runs/current")
        pipeline = client.call("GET", f"/sites/{site_id}/pipeline")
    if as_json:
        print_json({"site": site, "current_run": current, "pipeline": pipeline})
        return
    fields(site, ["id", "name", "domain", "account_id", "created_at"])
    console.print(f"current run: {current['run_id']} ({current['status']})" if current else "no active run")
    table(pipeline["pending"], ["stage", "label", "pending"])


@site_app.command("pipeline")
def site_pipeline(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """Items pending at each stage."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/pipeline")
    print_json(data) if as_json else table(data["pending"], ["stage", "label", "pending"])


# ---------------------------------------------------------------------- keywords
@keywords_app.command("import")
def keywords_import(
    ctx: typer.Context, site_id: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A CSV/TSV export (Semrush, Ahrefs, Keyword Planner, Search "
                                              "Console...), or .json")],
    as_json: JsonOption = False,
) -> None:
    """Import keywords from a keyword tool's CSV export or a JSON file ({"keywords": [...]} or a list); shows
    how each column of the file was used."""
    with client_for(ctx) as client:
        result = client.import_keywords_file(site_id, file)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    print_import_result(result)
    if result.columns:
        table([c.model_dump() for c in result.columns], ["header", ("stored_as", "stored as")], title="Columns")


METRICS = ("intent", "parent_keyword", "cpc", "currency", "competition", "competition_level", "trend",
           "serp_features", "clicks", "ctr", "position", "extra")  # fmt: skip


@keywords_app.command("list")
def keywords_list(
    ctx: typer.Context, site_id: str,
    status: Annotated[str | None, typer.Option(help="pending (not clustered yet), clustered or disabled.")] = None,
    cluster: Annotated[int | None, typer.Option(help="Only this cluster's keywords.")] = None,
    q: Annotated[str | None, typer.Option("--contains", help="Text the keyword contains.")] = None,
    intent: Annotated[str | None, typer.Option(help="Only this search intent (informational, commercial...).")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Only keywords with this parent keyword.")] = None,
    sort: Annotated[str, typer.Option(help="id, keyword, volume_desc, difficulty_desc.")] = "id",
    page: PageOption = 1, size: Annotated[int, typer.Option(min=1, max=500, help="Entries per page.")] = 50,
    wide: Annotated[bool, typer.Option("--wide", help="Every figure the tool gave (CPC, trend, SERP, ...).")] = False,
    as_json: JsonOption = False,
) -> None:
    """The site's keywords with volume, difficulty, intent, parent keyword, cluster and status (and with --wide,
    CPC, competition, trend, SERP features, clicks, CTR, position and the tool's other columns)."""
    with client_for(ctx) as client:
        data = client.content_page(site_id, "keywords", status=status, cluster_id=cluster, q=q, intent=intent,
                                   parent_keyword=parent, sort=sort, page=page, size=size)  # fmt: skip
    if as_json:
        print_json(data)
        return
    items = data["items"]
    table(items, ["id", "keyword", "volume", ("difficulty", "kd"), "intent", ("parent_keyword", "parent"),
                  ("cluster_name", "cluster"), "status"],
          title=f"{data['total']} keywords (page {data['page']})", empty="no keywords match")  # fmt: skip
    if wide:  # every figure of each keyword, one line each (too many columns for one table)
        for k in items:
            given = {name: k[name] for name in METRICS if k.get(name) not in (None, [], {})}
            if given:
                console.print(f"{k['id']} {k['keyword']}: " + " · ".join(f"{n} {cell(v)}" for n, v in given.items()),
                              markup=False)


@keywords_app.command("export")
def keywords_export(
    ctx: typer.Context, site_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
) -> None:
    """The site's keywords as CSV, every figure included (cells a spreadsheet would run are neutralised)."""
    with client_for(ctx) as client, (output.open("wb") if output else _stdout()) as target:
        written, _ = client.download(f"/sites/{site_id}/keywords/export.csv", target)
    if output:
        err_console.print(f"wrote {written:,} bytes to {output}")


def _stdout() -> Any:
    return open(sys.stdout.fileno(), "wb", closefd=False)


# ---------------------------------------------------------------------- config
def _config(client: Any, site_id: str) -> dict[str, Any]:
    return dict(client.call("GET", f"/sites/{site_id}/config"))


def _print_config(data: dict[str, Any]) -> None:
    flat: dict[str, Any] = {}
    for key, value in data["config"].items():
        if isinstance(value, dict) and key in {"limits", "options"}:
            flat |= {f"{key}.{k}": v for k, v in value.items()}
        else:
            flat[key] = value
    flat |= {k: data[k] for k in ("next_run_at", "last_run_at", "last_schedule_note")}
    flat["effective_budget_shares"] = data["effective_budget_shares"]
    fields(flat, title=f"Config of site {data['site_id']}")


@config_app.command("show")
def config_show(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """Every setting of the site (schedule, batches, delays, stages, limits, shares, AI options)."""
    with client_for(ctx) as client:
        data = _config(client, site_id)
    print_json(data) if as_json else _print_config(data)


def parse_value(text: str) -> Any:
    """A value as JSON when it is JSON (numbers, true/false, null, lists, objects), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_path(config: dict[str, Any], path: str, value: Any) -> tuple[str, Any]:
    """Put `value` at a dotted `path` of `config`; (the top-level field, its whole new value) for the patch."""
    top, *rest = path.split(".")
    if top not in config:
        raise ValueError(f"{top!r} is not a config field; fields: {', '.join(sorted(config))}")
    if not rest:
        return top, value
    node = whole = json.loads(json.dumps(config[top]))  # a copy: the other keys of a nested field stay as they are
    if not isinstance(node, dict):
        raise ValueError(f"{top!r} has no fields (it is {type(node).__name__})")
    for key in rest[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"{path!r}: {key!r} has no fields")
    node[rest[-1]] = value
    return top, whole


@config_app.command("set")
def config_set(
    ctx: typer.Context, site_id: str,
    field: Annotated[str, typer.Argument(help="A field, dotted for nested ones: limits.max_keywords_per_run, "
                                              "options.tone, batch_sizes.1, stage_enabled.5")],
    value: Annotated[str, typer.Argument(help="JSON (10, true, null, [..]) or plain text (Europe/Berlin)")],
    as_json: JsonOption = False,
) -> None:
    """Change one setting; the merged config is validated as a whole (422 names the field)."""
    with client_for(ctx) as client:
        top, whole = set_path(_config(client, site_id)["config"], field, parse_value(value))
        data = client.call("PATCH", f"/sites/{site_id}/config", json={top: whole})
    if as_json:
        print_json(data)
    else:
        console.print(f"{field} = {json.dumps(parse_value(value))} (site {site_id})", markup=False)


@config_app.command("edit")
def config_edit(
    ctx: typer.Context, site_id: str,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Apply this JSON file ('-': stdin) instead of "
                                                                   "opening $EDITOR.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Edit the whole config as JSON in $EDITOR (or apply --file); only changed fields are sent."""
    with client_for(ctx) as client:
        current = _config(client, site_id)["config"]
        text = _read_edit(current, file)
        try:
            edited = json.loads(text)
        except ValueError as exc:
            kept = _keep(text)
            fail([f"the edited config is not JSON: {exc}; your text is in {kept}"], EXIT_USAGE)
        if not isinstance(edited, dict):
            fail(["the edited config must be a JSON object"], EXIT_USAGE)
        changed = {k: v for k, v in edited.items() if current.get(k) != v}
        if not changed:
            err_console.print("no changes")
            return
        data = client.call("PATCH", f"/sites/{site_id}/config", json=changed)
    if as_json:
        print_json(data)
    else:
        console.print(f"changed {', '.join(sorted(changed))} (site {site_id})")


def _read_edit(current: dict[str, Any], file: Path | None) -> str:
    if file is not None:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    original = json.dumps(current, indent=2, ensure_ascii=False) + "\n"
    edited = click.edit(original, extension=".json", require_save=False)
    return original if edited is None else edited


def _keep(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="contentline-config-", delete=False) as fh:
        fh.write(text)
    return fh.name


# ---------------------------------------------------------------------- budget shares
@shares_app.command("show")
def shares_show(ctx: typer.Context, site_id: Annotated[str | None, typer.Argument()] = None,
                as_json: JsonOption = False) -> None:
    """A site's shares (its override and what applies), or without a site the global ones."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/budget-shares" if site_id else "/budget-shares")
    if as_json:
        print_json(data)
    elif site_id:
        fields({"override": data["override"] or "none (the global shares apply)", "effective": data["effective"]})
    else:
        fields(data, title="Global budget shares (percent of a run's credit cap)")


def _shares(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"{pair!r}: expected FUNCTION=PERCENT, e.g. content=40")
        out[name.strip()] = int(value)
    return out


@shares_app.command("set")
def shares_set(
    ctx: typer.Context, site_id: str,
    shares: Annotated[list[str] | None, typer.Argument(help="FUNCTION=PERCENT ... (summing to 100); none: back "
                                                            "to the global shares")] = None,
    as_json: JsonOption = False,
) -> None:
    """Override the global shares for one site (or, without shares, go back to them)."""
    with client_for(ctx) as client:
        data = client.call("PUT", f"/sites/{site_id}/budget-shares",
                           json={"shares": _shares(shares) if shares else None})
    print_json(data) if as_json else fields({"override": data["override"], "effective": data["effective"]})


@shares_app.command("set-global")
def shares_set_global(
    ctx: typer.Context,
    shares: Annotated[list[str], typer.Argument(help="FUNCTION=PERCENT for every AI function, summing to 100")],
    as_json: JsonOption = False,
) -> None:
    """(operator) The default shares of every site without its own."""
    with client_for(ctx, operator=True) as client:
        data = client.call("PUT", "/budget-shares", json={"shares": _shares(shares)})
    print_json(data) if as_json else fields(data, title="Global budget shares")
