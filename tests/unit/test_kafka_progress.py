"""Fetching the Kafka jars says what it is doing: a line every few seconds, also while mvn prints nothing."""

from __future__ import annotations

import io
import time

from devstack.kafka_jars import DownloadProgress

CLIENTS = "https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-clients/4.4.0/kafka-clients-4.4.0.jar"
MVN = [
    "[INFO] Scanning for projects...\n",
    "[INFO] --- maven-dependency-plugin:2.8:copy-dependencies (default-cli) @ local-kafka ---\n",
    f"Downloading from central: {CLIENTS}\n",
    f"Downloaded from central: {CLIENTS} (12.5 MB at 3.1 MB/s)\n",
    "Downloaded from central: https://repo.maven.apache.org/maven2/org/x/y/1/y-1.pom (1,250 kB at 1 MB/s)\n",
    "[INFO] Copying kafka_2.13-4.4.0.jar to /tmp/libs/kafka_2.13-4.4.0.jar\n",
]


def test_progress_counts_downloads_and_names_the_current_step() -> None:
    out = io.StringIO()
    with DownloadProgress("Kafka jars", every=0.05, out=out) as progress:
        time.sleep(0.12)  # mvn silent: the ticker still reports
        assert "starting Maven" in out.getvalue()
        for line in MVN[:3]:
            progress.feed(line)
        assert progress.current == "downloading kafka-clients-4.4.0.jar"
        for line in MVN[3:]:
            progress.feed(line)
    assert progress.files == 2 and round(progress.bytes) == 13_750_000
    assert progress.current == "copying kafka_2.13-4.4.0.jar"
    assert "Kafka jars: " in progress.status() and "2 files (13.8 MB) downloaded" in progress.status()
