"""`contentline`: every operation of the orchestrator's REST API from a terminal. Tables by default, `--json`
for scripts; errors are one line (one more per invalid field) and the exit code tells their kind (session.py).

    make up                                      # the CLI finds this stack by itself (config.py)
    contentline site create "My site" --domain example.com
    contentline keywords import SITE_ID semrush-export.csv
    contentline run start SITE_ID --follow
    contentline review queue SITE_ID
    contentline review approve DRAFT_ID --note "good"
    contentline export site SITE_ID

Commands live in one module per area; each registers here with one line. The building blocks of
`python -m devstack demo` (create_site, import_keywords, start_run, follow_and_summarise) are in follow.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from contentline_cli import accounts, config, ops, publishing, review, rules, runs, sites, webhooks
from contentline_cli.content import content_app
from contentline_cli.follow import create_site, follow_and_summarise, import_keywords, start_run

__all__ = ["app", "create_site", "follow_and_summarise", "import_keywords", "main", "start_run"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Keywords in, reviewed article drafts out.",
                  pretty_exceptions_show_locals=False)

ApiOption = Annotated[str | None, typer.Option(
    "--api", help="Orchestrator base URL (else CONTENTLINE_API_URL, the config file, the stack `make up` started, "
                  f"or {config.DEFAULT_API_URL}).")]


@app.callback()
def _root(ctx: typer.Context, api: ApiOption = None) -> None:
    ctx.obj = api


# One line per area (keep them sorted by area; colleagues add theirs the same way).
app.add_typer(accounts.account_app, name="account")
app.add_typer(accounts.credits_app, name="credits")
app.add_typer(accounts.keys_app, name="keys")
app.command("whoami")(accounts.whoami)
app.add_typer(sites.site_app, name="site")
app.add_typer(sites.keywords_app, name="keywords")
app.add_typer(sites.config_app, name="config")
app.add_typer(sites.shares_app, name="shares")
app.command("estimate")(runs.estimate)
app.add_typer(runs.run_app, name="run")
app.add_typer(review.review_app, name="review")
app.add_typer(review.export_app, name="export")
app.add_typer(publishing.publishing_app, name="publishing")
app.add_typer(content_app, name="content")
app.command("topics")(ops.topics)
app.command("lag")(ops.lag)
app.add_typer(ops.dlq_app, name="dlq")
app.command("tail")(ops.tail)
app.add_typer(ops.outbox_app, name="outbox")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(webhooks.webhooks_app, name="webhooks")


def main() -> None:
    app(prog_name="contentline")
