"""The cost table: what a batch's usage costs in credits. Decimal all the way, never floats."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import Usage

QUANTUM = Decimal("0.0001")


class CostTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords_per_credit: Decimal = Field(default=Decimal(5), gt=0)  # clustering: 1 credit per 5 keywords
    credits_per_cluster_ideated: Decimal = Field(default=Decimal(2), ge=0)
    words_per_credit: Decimal = Field(default=Decimal(500), gt=0)
    credits_per_image_prompt: Decimal = Field(default=Decimal("0.5"), ge=0)
    # images: 1-4 credits by quality, +1 above 1 megapixel
    image_quality_credits: dict[str, Decimal] = Field(
        default_factory=lambda: {"low": Decimal(1), "medium": Decimal(2), "high": Decimal(3)}
    )
    large_image_extra: Decimal = Decimal(1)

    def image_credits(self, size: str, quality: str) -> Decimal:
        base = self.image_quality_credits.get(quality, max(self.image_quality_credits.values()))
        width, _, height = size.partition("x")
        large = width.isdigit() and height.isdigit() and int(width) * int(height) > 1024 * 1024
        return base + (self.large_image_extra if large else Decimal(0))

    def credits(self, usage: Usage) -> Decimal:
        total = (
            Decimal(usage.keywords_clustered) / self.keywords_per_credit
            + Decimal(usage.clusters_ideated) * self.credits_per_cluster_ideated
            + Decimal(usage.words_written) / self.words_per_credit
            + Decimal(usage.image_prompts) * self.credits_per_image_prompt
            + sum((self.image_credits(i.size, i.quality) * i.count for i in usage.images), Decimal(0))
        )
        return total.quantize(QUANTUM)


DEFAULT_COSTS = CostTable()
