"""Rules API: CRUD of a site's automation rules, execute now, test (execute nothing), scheduled-task history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import INT64_MAX, Page, ResourceId, SiteId
from services.rules.schemas import (
    RuleSpec,
    RuleTestIn,
    RuleTestResult,
    RuleUpdate,
    RuleView,
    TaskPage,
    TaskStatus,
    TaskView,
)
from services.rules.service import RuleService

RuleId = Annotated[ResourceId, Path(description="A rule id of the caller's account")]
TaskId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A scheduled-task id of the caller's account")]


def build(rules: RuleService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["rules"])

    @api.post("/sites/{site_id}/rules", status_code=status.HTTP_201_CREATED)
    async def create_rule(site_id: SiteId, spec: RuleSpec, caller: TenantCaller) -> RuleView:
        """A rule of the site: trigger, conditions (all must hold), actions, daily limit, credit limit."""
        return await rules.create_rule(caller.tenant, site_id, spec)

    @api.get("/sites/{site_id}/rules")
    async def list_rules(site_id: SiteId, caller: TenantCaller) -> list[RuleView]:
        return await rules.list_rules(caller.tenant, site_id)

    @api.get("/rules/{rule_id}")
    async def get_rule(rule_id: RuleId, caller: TenantCaller) -> RuleView:
        return await rules.get_rule(caller.tenant, rule_id)

    @api.patch("/rules/{rule_id}")
    async def update_rule(rule_id: RuleId, patch: RuleUpdate, caller: TenantCaller) -> RuleView:
        """Only the fields given change; the rule that results is validated whole (422 naming the field)."""
        try:
            return await rules.update_rule(caller.tenant, rule_id, patch)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc

    @api.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_rule(rule_id: RuleId, caller: TenantCaller) -> Response:
        """Deletes the rule and its scheduled-task history; runs it started go on."""
        await rules.delete_rule(caller.tenant, rule_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @api.post("/rules/{rule_id}/execute", status_code=status.HTTP_202_ACCEPTED)
    async def execute_rule(rule_id: RuleId, caller: TenantCaller) -> TaskView:
        """Run now: a scheduled task decided at once (active, daily limit, credit limit; conditions are for
        events). A site with an active run keeps it pending until the site is free."""
        return await rules.execute_now(caller.tenant, rule_id)

    @api.post("/rules/{rule_id}/test")
    async def test_rule(rule_id: RuleId, caller: TenantCaller, body: RuleTestIn | None = None) -> RuleTestResult:
        """Evaluate the conditions against `sample` (or the rule's latest event); nothing is executed."""
        return await rules.test_rule(caller.tenant, rule_id, body.sample if body else None)

    @api.get("/sites/{site_id}/scheduled-tasks")
    async def list_tasks(
        site_id: SiteId,
        caller: TenantCaller,
        rule_id: Annotated[ResourceId | None, Query(description="Only this rule's")] = None,
        task_status: Annotated[TaskStatus | None, Query(alias="status")] = None,
        page: Page = 1,
        size: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> TaskPage:
        """The site's rule executions, newest first."""
        return await rules.list_tasks(caller.tenant, site_id, rule_id, task_status, page, size)

    @api.get("/scheduled-tasks/{task_id}")
    async def get_task(task_id: TaskId, caller: TenantCaller) -> TaskView:
        return await rules.get_task(caller.tenant, task_id)

    return [api]
