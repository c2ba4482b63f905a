"""The EspoCRM stack files: compose.yaml, the Caddyfile and the ECS template.

Read statically here; the real tools (``caddy validate``, ``cfn-lint``, ``docker compose config``)
run when they are installed and the tests that need them say so when they are not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cloudformation_yaml import load_sam_file

ROOT = Path(__file__).parents[2]
STACK = ROOT / "infra" / "espocrm"
COMPOSE = STACK / "compose.yaml"
CADDYFILE = STACK / "Caddyfile"
ENV_EXAMPLE = STACK / ".env.example"
ECS_TEMPLATE = ROOT / "infra" / "ecs" / "espocrm.yaml"

SERVICES = {"espocrm-db", "espocrm", "espocrm-daemon", "espocrm-websocket", "caddy"}
ESPOCRM_SERVICES = ("espocrm", "espocrm-daemon", "espocrm-websocket")
V10_VOLUMES = [
    "espocrm-data:/var/www/html/data",
    "espocrm-custom:/var/www/html/custom",
    "espocrm-custom-client:/var/www/html/client/custom",
]
PINNED = re.compile(r"^[a-z0-9./-]+:\d+(\.\d+)+(-[a-z0-9.]+)?$")
COMPOSE_ENV = {
    "CRM_DOMAIN": "crm.example.com",
    "ESPOCRM_ADMIN_PASSWORD": "admin-password",
    "MARIADB_PASSWORD": "db-password",
    "MARIADB_ROOT_PASSWORD": "root-password",
}
ECS_CADDY_ENV = {
    "CRM_DOMAIN": "crm.example.com",
    "ESPOCRM_UPSTREAM": "localhost:80",
    "ESPOCRM_WEBSOCKET_UPSTREAM": "localhost:8080",
    "CADDY_HTTP_PORT": "8000",
    "CADDY_HTTPS_PORT": "8443",
    "CADDY_PROTOCOLS": "h1 h2",
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def ecs_template() -> dict[str, Any]:
    return load_sam_file(ECS_TEMPLATE)


def ecs_containers() -> dict[str, dict[str, Any]]:
    definitions = ecs_template()["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {container["Name"]: container for container in definitions}


def _tool(name: str) -> str | None:
    """The tool beside this interpreter, in the deploy tools' virtualenv (make tools), or on PATH."""
    for directory in (Path(sys.executable).parent, ROOT / ".venv-tools" / "bin"):
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


# --- compose.yaml ----------------------------------------------------------------------------------


def test_compose_has_the_documented_services() -> None:
    assert set(compose()["services"]) == SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_is_pinned_restarts_and_has_a_healthcheck(service: str) -> None:
    definition = compose()["services"][service]
    image = definition["image"]
    assert PINNED.match(image), f"{service}: {image!r} is not pinned to a version"
    assert not image.endswith(":latest")
    assert definition["restart"] == "unless-stopped"
    assert definition["healthcheck"]["test"][0] == "CMD"
    assert {"interval", "timeout", "retries"} <= definition["healthcheck"].keys()


def test_only_caddy_publishes_ports() -> None:
    services = compose()["services"]
    assert {name for name, definition in services.items() if "ports" in definition} == {"caddy"}
    assert [port.split(" ")[0] for port in services["caddy"]["ports"]] == ["80:80", "443:443", "443:443/udp"]


def test_espocrm_containers_share_one_image_and_the_v10_volumes() -> None:
    services = compose()["services"]
    assert len({services[name]["image"] for name in ESPOCRM_SERVICES}) == 1
    assert services["espocrm"]["image"].startswith("espocrm/espocrm:10.")
    for name in ESPOCRM_SERVICES:
        assert services[name]["volumes"] == V10_VOLUMES, name
    assert services["espocrm-daemon"]["entrypoint"] == "docker-daemon.sh"
    assert services["espocrm-websocket"]["entrypoint"] == "docker-websocket.sh"


def test_espocrm_is_configured_for_the_proxy_and_the_domain() -> None:
    services = compose()["services"]
    espocrm = services["espocrm"]["environment"]
    assert espocrm["ESPOCRM_CONFIG_IP_ADDRESS_SERVER_PARAM"] == "HTTP_X_FORWARDED_FOR"
    assert espocrm["ESPOCRM_SITE_URL"].startswith("https://${CRM_DOMAIN")
    assert espocrm["ESPOCRM_CONFIG_SITE_URL"].startswith("https://${CRM_DOMAIN")
    websocket = services["espocrm-websocket"]["environment"]
    assert websocket["ESPOCRM_CONFIG_USE_WEB_SOCKET"] == "true"
    assert re.fullmatch(r"wss://\$\{CRM_DOMAIN[^}]*\}/ws", websocket["ESPOCRM_CONFIG_WEB_SOCKET_URL"])
    assert services["espocrm"]["depends_on"] == {"espocrm-db": {"condition": "service_healthy"}}
    assert services["caddy"]["environment"]["CRM_DOMAIN"].startswith("${CRM_DOMAIN")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in services["caddy"]["volumes"]


def test_secrets_come_from_env_and_every_variable_is_in_the_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines() if re.match(r"^[A-Z]", line)
    )
    assert used == set(example)
    # No password is written into the stack files or shipped in the example.
    for name in ("ESPOCRM_ADMIN_PASSWORD", "MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD"):
        assert example[name] == ""
        assert f"${{{name}:?" in text, f"{name} must be required, not defaulted"
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def _compose_command() -> list[str] | None:
    """Docker Compose v2 (plugin or standalone); ``config`` needs no Docker engine."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:  # noqa: S603
        return [docker, "compose"]
    standalone = _tool("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False)  # noqa: S603
        if "v2." in version.stdout:
            return [standalone]
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("Docker Compose v2 is not installed (docker compose plugin or docker-compose v2)")
    env = {key: value for key, value in os.environ.items() if key not in COMPOSE_ENV}
    ok = subprocess.run(  # noqa: S603
        [*command, "-f", str(COMPOSE), "--env-file", os.devnull, "config", "--quiet"],
        env={**env, **COMPOSE_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(  # noqa: S603
        [*command, "-f", str(COMPOSE), "--env-file", os.devnull, "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0
    assert "in .env" in missing.stderr  # the variable is named, with where to set it


# --- Caddyfile -------------------------------------------------------------------------------------


def test_caddyfile_proxies_espocrm_and_its_websocket_with_security_headers() -> None:
    text = CADDYFILE.read_text(encoding="utf-8")
    assert "{$CRM_DOMAIN} {" in text
    assert "encode zstd gzip" in text
    assert "@websocket path /ws /ws/*" in text
    assert "reverse_proxy {$ESPOCRM_WEBSOCKET_UPSTREAM:espocrm-websocket:8080}" in text
    assert "reverse_proxy {$ESPOCRM_UPSTREAM:espocrm:80}" in text
    for header in ("Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
        assert f"\t\t{header} " in text
    assert "Content-Security-Policy" not in text.split("header {", 1)[1].split("}", 1)[0]  # EspoCRM's own


def _caddy_validate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (Debian: apt-get install caddy)")
    base = {key: value for key, value in os.environ.items() if key not in ECS_CADDY_ENV}
    return subprocess.run(  # noqa: S603
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_caddy_validates_the_caddyfile() -> None:
    result = _caddy_validate({"CRM_DOMAIN": "crm.example.com"})
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_validates_the_caddyfile_as_ecs_runs_it() -> None:
    result = _caddy_validate(ECS_CADDY_ENV)
    assert result.returncode == 0, result.stderr


def test_caddy_refuses_to_start_without_a_domain() -> None:
    result = _caddy_validate({})
    assert result.returncode != 0


# --- ECS template ----------------------------------------------------------------------------------


def test_ecs_template_passes_cfn_lint() -> None:
    cfn_lint = _tool("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (make tools puts it in .venv-tools)")
    result = subprocess.run([cfn_lint, str(ECS_TEMPLATE)], capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr


def test_ecs_runs_the_same_caddyfile_and_images_as_compose() -> None:
    containers = ecs_containers()
    caddy_env = {item["Name"]: item["Value"] for item in containers["caddy"]["Environment"]}
    assert caddy_env.pop("CADDYFILE") == CADDYFILE.read_text(encoding="utf-8")
    assert {key: value for key, value in caddy_env.items() if isinstance(value, str)} == {
        key: value for key, value in ECS_CADDY_ENV.items() if key != "CRM_DOMAIN"
    }
    parameters = ecs_template()["Parameters"]
    services = compose()["services"]
    assert parameters["EspoCrmImage"]["Default"] == services["espocrm"]["image"]
    assert parameters["CaddyImage"]["Default"] == services["caddy"]["image"]


def test_ecs_task_has_the_four_containers_on_efs_with_secrets() -> None:
    template = ecs_template()
    containers = ecs_containers()
    assert set(containers) == {"espocrm", "espocrm-daemon", "espocrm-websocket", "caddy"}
    for name in ("espocrm", "espocrm-daemon", "espocrm-websocket"):
        mounts = [(m["SourceVolume"], m["ContainerPath"]) for m in containers[name]["MountPoints"]]
        assert mounts == [tuple(volume.split(":")) for volume in V10_VOLUMES], name
    volumes = template["Resources"]["TaskDefinition"]["Properties"]["Volumes"]
    assert all(volume["EFSVolumeConfiguration"]["TransitEncryption"] == "ENABLED" for volume in volumes)
    secrets = {item["Name"] for item in containers["espocrm"]["Secrets"]}
    assert secrets == {"ESPOCRM_DATABASE_PASSWORD", "ESPOCRM_ADMIN_PASSWORD"}
    environment = {item["Name"]: item["Value"] for item in containers["espocrm"]["Environment"]}
    assert "ESPOCRM_DATABASE_PASSWORD" not in environment
    assert environment["ESPOCRM_CONFIG_IP_ADDRESS_SERVER_PARAM"] == "HTTP_X_FORWARDED_FOR"
    database = template["Resources"]["Database"]["Properties"]
    assert database["Engine"] == "mariadb"
    assert database["PubliclyAccessible"] is False
    assert database["StorageEncrypted"] is True
    service = template["Resources"]["Service"]["Properties"]
    assert service["DesiredCount"] == 1  # one daemon, one websocket server
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
