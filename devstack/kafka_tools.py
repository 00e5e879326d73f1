"""Kafka's own command-line tools (kafka-topics, kafka-consumer-groups, ...) for the local stack.

The jars come with the broker's (``org.apache.kafka:kafka-tools`` in ``assets/kafka-pom.xml``); the
wrappers are small shell scripts that run the right main class with this stack's bootstrap preset, so an
operator reaches for ``kafka-consumer-groups --describe --group X`` as anywhere else. Stdlib only, like
``devstack/kafka.py``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from devstack.kafka import ensure_kafka_jars, java_executable

_TOOLS_LOG4J_CONFIG = Path(__file__).resolve().parent / "assets" / "tools-log4j2.properties"

# Wrapper name (as in Kafka's bin/ directory, minus ".sh") → main class in Kafka 4.4's kafka-tools jar.
KAFKA_TOOLS: dict[str, str] = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-configs": "org.apache.kafka.tools.ConfigCommand",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
}

_WRAPPER = """#!/bin/sh
# {name}: Kafka's {main} against the contentline broker at {bootstrap}.
# Written by devstack/kafka_tools.py when the broker started; --bootstrap-server is added unless given.
preset=yes
for arg in "$@"; do
  case "$arg" in --bootstrap-server|--bootstrap-server=*) preset= ;; esac
done
if [ -n "$preset" ]; then set -- --bootstrap-server {q_bootstrap} "$@"; fi
exec {jvm} {q_main} "$@"
"""


def write_tool_wrappers(bin_dir: Path, bootstrap: str, libs: Path | None = None) -> dict[str, Path]:
    """Write `bin_dir/<tool>` shell wrappers for Kafka's CLI tools, preset to `bootstrap`.

    They run the tools from the cached jars (resolved now if needed), with a small heap, warnings only
    on stderr, and the C1 JIT alone: one-shot commands start faster. Returns tool name → script path.
    """
    libs = libs or ensure_kafka_jars()
    java = java_executable()
    jvm = [
        java,
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xms32m",
        "-Xmx256m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_TOOLS_LOG4J_CONFIG}",
        "-cp",
        str(libs / "*"),
    ]
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, main in KAFKA_TOOLS.items():
        script = bin_dir / name
        script.write_text(
            _WRAPPER.format(
                name=name,
                main=main,
                bootstrap=bootstrap,
                q_bootstrap=shlex.quote(bootstrap),
                jvm=" ".join(shlex.quote(arg) for arg in jvm),
                q_main=shlex.quote(main),
            )
        )
        script.chmod(0o755)
        written[name] = script
    return written
