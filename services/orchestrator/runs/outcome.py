"""What a finished run produced. A run whose items all failed must not read as a plain success: when its last
enabled stage produced nothing while items failed, it ends `completed` with `stopped_reason = "no_output"`
and the reasons per stage in `error_message` (the CLI exits 4 for it).

Why `completed` and not `failed`: the engine did its job (every stage closed, every failure recorded per
item, real work charged), and a run marked `failed` means the engine could not carry it through (workers
gone past the stage deadline). "Nothing came out, and here is why" is an outcome of the content, not of the
machinery, and it keeps the two apart for whoever alerts on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.orchestrator.config import RunPlan
from shared.contracts import Stage
from shared.db.models import StageRunResult

NO_OUTPUT = "no_output"
REASONS_PER_STAGE = 2


def no_output(plan: RunPlan, results: Sequence[StageRunResult]) -> str | None:
    """The reasons when the run's last enabled work stage processed nothing while items failed, else None."""
    work = [s for s in range(1, 7) if plan.stage_enabled.get(s, True)]
    if not work:
        return None
    by_stage = {r.stage: r for r in results}
    last = by_stage.get(work[-1])
    failed = [r for r in results if r.items_failed and r.stage <= 6]
    if not failed or (last is not None and last.items_processed > 0):
        return None
    parts = []
    for r in sorted(failed, key=lambda r: r.stage):
        reasons = list(dict.fromkeys(str(f.get("reason", ""))[:200] for f in r.failures))[:REASONS_PER_STAGE]
        parts.append(
            f"stage {r.stage} ({Stage(r.stage).label}): {r.items_failed} of {r.items_in} failed"
            + (f" ({' | '.join(reasons)})" if reasons else "")
        )
    total = sum(r.items_failed for r in failed)
    return f"no output: stage {work[-1]} ({Stage(work[-1]).label}) produced nothing; {total} item(s) failed: " + (
        "; ".join(parts)
    )
