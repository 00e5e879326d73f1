"""Kafka and PostgreSQL from testcontainers, used only where a Docker engine answers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        with contextlib.closing(client):
            return bool(client.ping())
    except Exception:  # no engine, no socket, no permission: all mean "use the local launcher"
        return False


@dataclass
class ContainerInfra:
    kafka_bootstrap: str
    database_url: str
    _containers: list[Any]

    def stop(self) -> None:
        for container in reversed(self._containers):
            with contextlib.suppress(Exception):
                container.stop()


def start_containers() -> ContainerInfra:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    # testcontainers' KafkaContainer drives Confluent's image (its start script and readiness check expect
    # it); KRaft mode, no ZooKeeper. docker-compose.yml uses the apache/kafka image instead.
    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    kafka.start()
    pg = PostgresContainer("postgres:16-alpine", username="contentline", password="contentline", dbname="contentline")
    pg.start()
    url = f"postgresql+asyncpg://contentline:contentline@{pg.get_container_host_ip()}:{pg.get_exposed_port(5432)}/contentline"
    return ContainerInfra(kafka.get_bootstrap_server(), url, [kafka, pg])
