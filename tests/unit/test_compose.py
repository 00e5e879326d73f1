"""docker-compose.yml, Dockerfile and .dockerignore checked against the code they start.

No Docker engine is needed: the compose file is parsed (PyYAML resolves the `<<` merge keys and anchors the
same way Compose does) and compared with the services on disk, `shared.settings.Settings` and the local stack.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICE_NAMES = sorted(p.parent.name for p in (ROOT / "services").glob("*/app.py"))
ENV_ANCHOR = "x-contentline-env"
# Variables compose sets that the local stack (devstack) does not, each for a reason of its own.
# A container must listen on its interface, not on its loopback; compose's operator key is a file in a volume
# (the local stack passes its own through the same variable, per stack: devstack demo/up and the tests).
# /metrics: the local stack gives each service a port of its own on loopback (Stack.start_service), not in env().
COMPOSE_ONLY_VARS = {
    "CONTENTLINE_API_HOST", "CONTENTLINE_OPERATOR_KEY_FILE", "CONTENTLINE_METRICS_PORT", "CONTENTLINE_METRICS_HOST"
}

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def interpolate(value: object) -> str:
    """The value Compose would use with none of the referenced variables set: `${X:-default}` → default."""
    text = str(value)
    unresolved = [m.group("name") for m in _INTERPOLATION.finditer(text) if m.group("default") is None]
    assert not unresolved, f"{text!r} needs {unresolved} set: give it a default"
    return _INTERPOLATION.sub(lambda m: m.group("default"), text).replace("$$", "$")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (the shared block is merged with <<)"
    return {str(k): interpolate(v) for k, v in env.items()}


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def settings_env_names() -> dict[str, str]:
    """Every environment variable `Settings` reads → the field it sets."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({str(choice): field_name for choice in alias.choices})
        elif isinstance(alias, str):
            names[alias] = field_name
        else:
            names[f"{prefix}{field_name}".upper()] = field_name
    return names


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as a container with this environment builds them (nothing leaks in from this machine)."""
    for key in list(os.environ):
        if key.startswith(("CONTENTLINE_", "OPENAI_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_compose_spec_file_without_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert set(SERVICE_NAMES) == {
        "orchestrator",
        "clusterer",
        "ideator",
        "writer",
        "imager",
        "publisher",
        "webhooks",
        "rules",
    }


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_service_package_has_a_compose_service_running_it(name: str, services: dict[str, Any]) -> None:
    assert name in services, f"services/{name} has no compose service"
    service = services[name]
    assert argv(service) == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").is_file()
    assert service["image"] == services["migrate"]["image"], "every contentline process runs the one image"
    assert service["build"]["context"] == "."


def test_no_compose_command_points_at_a_missing_module(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "command" not in service:
            continue
        args = argv(service)
        if args[:2] == ["python", "-m"]:
            module_dir = ROOT / Path(*args[2].split("."))
            assert (module_dir / "__main__.py").is_file() or module_dir.with_suffix(".py").is_file(), (
                f"{name}: no module {args[2]}"
            )


def test_shared_env_block_sets_only_fields_settings_accepts(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    shared = compose[ENV_ANCHOR]
    assert shared, "the shared env block is empty"
    unknown = sorted(set(shared) - set(known))
    assert not unknown, f"Settings has no field for {unknown} (pydantic-settings would silently ignore them)"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_env_is_the_shared_block_plus_known_fields(
    name: str, compose: dict[str, Any], services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services[name])
    shared = {str(k): interpolate(v) for k, v in compose[ENV_ANCHOR].items()}
    assert shared.items() <= env.items(), f"{name} does not get the shared env block"
    unknown = sorted(set(env) - set(settings_env_names()))
    assert not unknown, f"{name}: Settings has no field for {unknown}"

    settings = settings_from(env, monkeypatch)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert make_url(settings.database_url).host == "postgres"
    assert settings.openai_api_key.get_secret_value()
    assert settings.openai_base_url


def test_env_has_the_same_variables_as_the_local_stack(services: dict[str, Any], tmp_path: Path) -> None:
    from devstack.stack import Stack

    stack_env = Stack(state_dir=tmp_path).env()
    local = {k for k in stack_env if k.startswith(("CONTENTLINE_", "OPENAI_"))}
    compose_env = set(env_of(services["orchestrator"]))
    assert local - compose_env == set(), "the local stack sets variables compose does not"
    assert compose_env - local == COMPOSE_ONLY_VARS


def test_orchestrator_listens_on_all_interfaces_on_the_published_port(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    orchestrator = services["orchestrator"]
    settings = settings_from(env_of(orchestrator), monkeypatch)
    assert settings.api_host == "0.0.0.0"  # inside a container, on purpose
    published = {str(p).rsplit(":", 1)[-1] for p in orchestrator["ports"]}
    assert published == {str(settings.api_port)}
    health = " ".join(orchestrator["healthcheck"]["test"])
    assert f":{settings.api_port}/health" in health


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_services_start_after_migrations_and_healthy_infrastructure(name: str, services: dict[str, Any]) -> None:
    depends = services[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    for infra in ("kafka", "postgres", "fakeai"):
        assert depends[infra]["condition"] == "service_healthy"


def test_every_healthy_condition_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec.get("condition") == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"


def test_migrate_is_a_one_shot_of_the_alembic_migrations(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert argv(migrate) == ["python", "-m", "shared.db.migrate"]
    assert str(migrate["restart"]) == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "CONTENTLINE_DATABASE_URL" in env_of(migrate)
    assert (ROOT / "alembic.ini").is_file()
    assert (ROOT / "shared" / "db" / "migrations" / "env.py").is_file()


def test_postgres_credentials_match_the_database_url(compose: dict[str, Any], services: dict[str, Any]) -> None:
    url = make_url(interpolate(compose[ENV_ANCHOR]["CONTENTLINE_DATABASE_URL"]))
    postgres = services["postgres"]
    env = env_of(postgres)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        url.username,
        url.password,
        url.database,
    )
    assert url.port in (None, 5432)
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_kafka_advertises_the_bootstrap_the_services_use(compose: dict[str, Any], services: dict[str, Any]) -> None:
    bootstrap = interpolate(compose[ENV_ANCHOR]["CONTENTLINE_KAFKA_BOOTSTRAP"])
    kafka = services["kafka"]
    env = env_of(kafka)
    assert f"PLAINTEXT://{bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    # Topics come from shared.kafka.ensure_topics only; a Compose boolean would be rejected, hence the string.
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_NUM_PARTITIONS"]) == Settings.model_fields["topic_partitions"].default
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert any(str(v).startswith("kafka-data:") for v in kafka["volumes"])


def test_default_ai_provider_is_the_fake_service_and_overridable(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    shared = compose[ENV_ANCHOR]
    # `OPENAI_API_KEY=sk-... OPENAI_BASE_URL=https://... docker compose up` must switch to a real provider.
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        match = _INTERPOLATION.fullmatch(str(shared[var]))
        assert match and match.group("name") == var and match.group("default"), f"{var} is not ${{{var}:-default}}"
    base = urlsplit(interpolate(shared["OPENAI_BASE_URL"]))
    fakeai = services["fakeai"]
    args = argv(fakeai)
    assert args[:3] == ["python", "-m", "fakeai"]
    assert base.hostname == "fakeai" and base.path == "/v1"
    assert args[args.index("--host") + 1] == "0.0.0.0"  # inside a container, on purpose
    assert args[args.index("--port") + 1] == str(base.port)
    assert f":{base.port}/health" in " ".join(fakeai["healthcheck"]["test"])


def test_media_volume_is_shared_by_imager_and_orchestrator(compose: dict[str, Any], services: dict[str, Any]) -> None:
    media_dir = interpolate(compose[ENV_ANCHOR]["CONTENTLINE_MEDIA_DIR"])
    for name in ("imager", "orchestrator"):
        assert f"media:{media_dir}" in services[name]["volumes"], f"{name} does not mount media at {media_dir}"
    assert "media" in compose["volumes"]
    # The image creates the directory (owned by the app user) so the empty named volume takes that owner.
    assert media_dir in (ROOT / "Dockerfile").read_text()


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_dockerfile_layers_and_user() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]
    instructions = [ln for ln in lines if not ln.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "WORKDIR /app" in instructions
    copies = [ln for ln in instructions if ln.startswith("COPY")]
    assert copies[0] == "COPY pyproject.toml ./", "dependencies are installed before the sources are copied"
    users = [ln.split()[1] for ln in instructions if ln.startswith("USER")]
    assert users and users[-1] not in ("root", "0")
    assert not any(ln.startswith(("CMD", "ENTRYPOINT")) for ln in instructions), "compose gives the command"


def test_dockerignore_keeps_out_local_state_but_not_what_the_image_needs() -> None:
    patterns = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert {".venv", ".stack", "var", ".git"} <= set(patterns)

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.removeprefix("**/")) or path.startswith(f"{p}/") for p in patterns)

    needed = ["pyproject.toml", "alembic.ini", "shared/db/migrations/env.py", "shared/settings.py", "fakeai/app.py"]
    needed += [f"services/{name}/__main__.py" for name in SERVICE_NAMES]
    assert [p for p in needed if ignored(p)] == []
