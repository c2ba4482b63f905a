"""What a local run is configured with: embedded defaults, then ``.env``, then the environment.

Nothing needs configuring: without ``CRM_PROVIDER`` the run uses the sandbox CRM, and the settings
a deployed stack must be given (redirect targets) have local defaults here. A setting reaches the
functions the way the template says it does:

* a variable the template sets to a parameter (``REDIRECT_TELEGRAM_URL: !Ref RedirectTelegramUrl``)
  sets that parameter, checked against its AllowedValues/AllowedPattern as CloudFormation would,
  so a value that could not be deployed cannot be run either;
* the CRM connection (which a stack receives as parameters and secret *names*) goes to every
  function that declares ``CRM_PROVIDER``; secrets are put into the local SSM and the functions
  get the parameter name, as in AWS;
* any other variable replaces the value of the functions that declare it; a variable no function
  declares is reported and ignored (the deployed stack could not receive it either), and so is one
  the template wires to its own resources (``CRM_QUEUE_URL: !Ref OperationsQueue``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from crm_bridge.errors import SettingsError
from crm_bridge.settings import CrmProviderName, load_settings
from infra.local.template import Template

LOCAL_DEFAULTS: dict[str, str] = {
    # Where /go/{channel} leads. Placeholders of the right shape: replace them in .env.
    "REDIRECT_TELEGRAM_URL": "https://t.me/crm_bridge_demo_bot",
    "REDIRECT_WHATSAPP_NUMBER": "905550000000",
    "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/crm_bridge_demo",
}
CRM_SETTINGS = (
    "CRM_PROVIDER",
    "CRM_SHADOW_PROVIDER",
    "CRM_TIMEOUT_SECONDS",
    "CRM_FIELD_MAPPING_FILE",
    "DEFAULT_PHONE_REGION",
    "ESPOCRM_URL",
    "ESPOCRM_API_KEY",
    "ESPOCRM_HMAC_SECRET",
    "BITRIX24_WEBHOOK_URL",
    "SANDBOX_DB_PATH",
)
# Each secret's value goes into the local SSM; the name of its parameter is the stack's parameter.
SECRET_PARAMETERS = {  # nosec B105  # the names of stack parameters, no secrets
    "ESPOCRM_API_KEY": "EspoCrmApiKeyName",
    "ESPOCRM_HMAC_SECRET": "EspoCrmHmacSecretName",
    "BITRIX24_WEBHOOK_URL": "Bitrix24WebhookUrlName",
}
SECRETS = tuple(SECRET_PARAMETERS)
LOCAL_PARAMETER_PREFIX = "/crm-bridge/local/"
RUNNER_SETTINGS = ("LOCAL_PORT", "DEMO_API_ORIGIN", "LOCAL_THROTTLING")
DEFAULT_PORT = 3000
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class ConfigError(Exception):
    """The local configuration cannot work; the message names the setting."""


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; ``#`` comments, blank lines, optional quotes and ``export``."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ConfigError(f"{path.name}, line {number}: expected KEY=value")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


@dataclass
class CrmChoice:
    provider: str
    settings: dict[str, str]
    """The CRM variables every CRM function gets (secrets not among them: see ``secrets``)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Secret values by variable name, to be stored in the local SSM."""

    def stack_parameters(self) -> dict[str, str]:
        """The names of the secrets' parameters, as the stack takes them (its functions' variables and
        the policy that lets them read these parameters, and no others, follow from them)."""
        return {SECRET_PARAMETERS[name]: local_secret_name(name) for name in self.secrets}

    @property
    def is_sandbox(self) -> bool:
        return self.provider == CrmProviderName.SANDBOX

    def describe(self) -> str:
        """One line for the console: which CRM (and the shadow of a dual-write), where, never a secret."""
        shadow = self.settings.get("CRM_SHADOW_PROVIDER")
        also = f"; dual-write: every operation also queued for the shadow, {self._where(shadow)}" if shadow else ""
        if self.is_sandbox:
            return f"SANDBOX, not a real CRM: leads are kept in {self.settings['SANDBOX_DB_PATH']}{also}"
        return self._where(self.provider) + also

    def _where(self, provider: str) -> str:
        if provider == CrmProviderName.ESPOCRM:
            return f"EspoCRM at {self.settings.get('ESPOCRM_URL')}"
        host = urlsplit(self.secrets.get("BITRIX24_WEBHOOK_URL", "")).hostname or "?"
        return f"Bitrix24 portal {host} (inbound webhook)"


@dataclass
class LocalConfig:
    values: dict[str, str]
    sources: dict[str, str]
    """Where each value came from: "default", ".env" or "environment"."""

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    @property
    def port(self) -> int:
        raw = self.get("LOCAL_PORT") or str(DEFAULT_PORT)
        if not raw.isdigit() or not 0 <= int(raw) < 65536:
            raise ConfigError(f"LOCAL_PORT: {raw!r} is not a port")
        return int(raw)

    @property
    def demo_api_origin(self) -> str:
        """Where the demo page's snippet finds the API (``data-api``): "" for the page's own origin,
        else an origin such as ``http://go.agency.test:3000`` (the site and the API on two hosts)."""
        raw = (self.get("DEMO_API_ORIGIN") or "").rstrip("/")
        if not raw:
            return ""
        parts = urlsplit(raw)
        try:
            port_ok = parts.port != 0
        except ValueError:  # not a number, or out of range
            port_ok = False
        extra = parts.path or parts.query or parts.fragment or parts.username
        if not port_ok or parts.scheme not in ("http", "https") or not parts.hostname or extra:
            raise ConfigError(f"DEMO_API_ORIGIN: {raw!r} is not an origin such as http://go.agency.test:3000")
        return raw

    @property
    def throttling(self) -> bool:
        """Whether the gateway applies the template's route throttles (``LOCAL_THROTTLING``, on by
        default; ``off`` for load tests that measure what reaches the CRM, not API Gateway's limits)."""
        value = (self.get("LOCAL_THROTTLING") or "on").strip().lower()
        if value not in ("on", "off"):
            raise ConfigError(f"LOCAL_THROTTLING: {value!r} must be on or off")
        return value == "on"


def load_config(env_file: Path | None, known: set[str], environ: Mapping[str, str] | None = None) -> LocalConfig:
    """Defaults, then the .env file, then variables of the process environment that are settings
    of this project (``known``): never the rest of a developer's environment."""
    environ = os.environ if environ is None else environ
    values = dict(LOCAL_DEFAULTS)
    sources = dict.fromkeys(LOCAL_DEFAULTS, "default")
    if env_file is not None and env_file.is_file():
        from_file = read_env_file(env_file)
        values |= from_file
        sources |= dict.fromkeys(from_file, env_file.name)
    for name in sorted(known):
        if name in environ:
            values[name] = environ[name]
            sources[name] = "environment"
    return LocalConfig(values, sources)


def known_settings(template: Template) -> set[str]:
    """Every setting a local run can take: what the template's functions declare, the CRM
    connection, and the runner's own."""
    return set(template.variables()) | set(CRM_SETTINGS) | set(RUNNER_SETTINGS)


def choose_crm(config: LocalConfig, data_dir: Path) -> CrmChoice:
    """The CRM of ``.env``, checked by the layer's own settings validation; the sandbox without one."""
    provider = config.get("CRM_PROVIDER") or CrmProviderName.SANDBOX.value
    settings = {name: value for name in CRM_SETTINGS if (value := config.get(name)) is not None}
    settings["CRM_PROVIDER"] = provider
    if provider == CrmProviderName.SANDBOX:
        settings["SANDBOX_DB_PATH"] = str(
            Path(settings.get("SANDBOX_DB_PATH") or data_dir / "sandbox.sqlite3").resolve()
        )
    for name in SECRETS:
        if config.get(f"{name}_PARAM"):
            raise ConfigError(
                f"{name}_PARAM names a parameter in AWS, which a local run cannot read: set {name} itself in .env "
                "(the runner keeps it in the local SSM)"
            )
    if settings.get("CRM_FIELD_MAPPING_FILE"):
        settings["CRM_FIELD_MAPPING_FILE"] = str(Path(settings["CRM_FIELD_MAPPING_FILE"]).resolve())
    try:
        load_settings(settings)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    secrets = {name: settings.pop(name) for name in SECRETS if name in settings}
    return CrmChoice(provider, settings, secrets)


def local_secret_name(variable: str) -> str:
    return LOCAL_PARAMETER_PREFIX + variable.lower().replace("_", "-")


@dataclass
class Placement:
    """Where each configured setting goes."""

    parameters: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    """Read by no function of the template: a deployed stack could not receive them either."""
    wired: list[str] = field(default_factory=list)
    """The template sets them to its own resources (queue URLs, table names): the runner does."""


def place_settings(config: LocalConfig, template: Template) -> Placement:
    placement = Placement()
    parameter_of = template.parameter_for_variable()
    wired = template.variables_wired_to_resources()
    declared = known_settings(template) - set(CRM_SETTINGS) - set(RUNNER_SETTINGS)
    for name, value in config.values.items():
        if name in CRM_SETTINGS or name in RUNNER_SETTINGS or name.removesuffix("_PARAM") in SECRETS:
            continue
        if name in wired:
            placement.wired.append(name)
        elif name in parameter_of:
            placement.parameters[parameter_of[name]] = value
        elif name in declared:
            placement.overrides[name] = value
        else:
            placement.ignored.append(name)
    return placement


def function_settings(resolved: Mapping[str, str], placement: Placement, crm: CrmChoice) -> dict[str, str]:
    """A function's variables: the deployed function's, with the local values laid over them (the CRM
    connection, which a stack could not take as it stands: the sandbox, an http:// EspoCRM)."""
    environment = dict(resolved)
    environment |= {name: value for name, value in placement.overrides.items() if name in environment}
    if "CRM_PROVIDER" in environment:
        environment |= crm.settings
    return environment
