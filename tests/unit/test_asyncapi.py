"""The committed AsyncAPI document is what `faststream docs gen` produces today, and it and the README
name exactly the topics of shared/topics.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_current_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = subprocess.run(
        [sys.executable, "-m", "faststream", "docs", "gen", "shared.asyncapi:app", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    generated = json.loads(out.read_text())
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert generated == committed, "docs/asyncapi.json is stale: run `make docs`"
    addresses = {channel["address"] for channel in generated["channels"].values()}
    assert addresses == set(ALL_TOPICS)
    for schema in ("KeywordBatchIngested", "StageCommand", "StageResult", "RunEvent"):
        assert schema in generated["components"]["schemas"]


def test_readme_documents_every_topic() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [topic for topic in ALL_TOPICS if f"`{topic}`" not in readme]
    assert not missing, f"README.md does not document {missing}"
