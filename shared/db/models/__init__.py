"""SQLAlchemy models, by domain. One database; each table has one owning service (noted per class).

Reads across tables are fine (the orchestrator counts pending work everywhere); writes stay with the
owner. Money is `Numeric(18, 4)` so fractional credits never drift. Importing this package registers every
table on `Base.metadata` (Alembic and the tests rely on that).
"""

from __future__ import annotations

from shared.db.models.accounts import (
    Account,
    ApiKey,
    GlobalBudgetShare,
    Site,
    SiteConfigRow,
)
from shared.db.models.automation import (
    Rule,
    ScheduledTask,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.db.models.base import NAMING, Base, Credits, now_column
from shared.db.models.content import (
    Cluster,
    ClusteringSpace,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Keyword,
    KeywordEmbedding,
    WriterTask,
)
from shared.db.models.delivery import (
    AiCall,
    DeliveryAttempt,
    InboxMessage,
    OutboxMessage,
)
from shared.db.models.publishing import (
    Publication,
    PublicationMedia,
    PublishingSettingsRow,
    ScheduledPublication,
    WordPressConnection,
)
from shared.db.models.runs import (
    ActivityLog,
    CreditLedger,
    DashboardSession,
    DraftVersion,
    FailingItem,
    ReviewDecision,
    Run,
    StageBatch,
    StageRunResult,
)

__all__ = [
    "NAMING",
    "Account",
    "ActivityLog",
    "AiCall",
    "ApiKey",
    "Base",
    "Cluster",
    "ClusteringSpace",
    "CreditLedger",
    "Credits",
    "DashboardSession",
    "DeliveryAttempt",
    "Draft",
    "DraftVersion",
    "FailingItem",
    "GlobalBudgetShare",
    "Idea",
    "Image",
    "ImagePrompt",
    "InboxMessage",
    "Keyword",
    "KeywordEmbedding",
    "OutboxMessage",
    "Publication",
    "PublicationMedia",
    "PublishingSettingsRow",
    "ReviewDecision",
    "Rule",
    "Run",
    "ScheduledPublication",
    "ScheduledTask",
    "Site",
    "SiteConfigRow",
    "StageBatch",
    "StageRunResult",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WordPressConnection",
    "WriterTask",
    "now_column",
]
