"""Reads configuration once, from the environment over the TOML file (DESIGN 3.3-3.4), into typed settings."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from sessions.db import async_url


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> float:
    """'15m' -> 900.0 seconds; a bare number is seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h, 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _duration_text(value: str) -> str:
    parse_duration(value)
    return value.strip()


class Defaults(BaseModel):
    namespace: str = "default"
    window: str = "15m"
    approval_ttl: str = "30m"

    @field_validator("window", "approval_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _duration_text(value)

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)

    @property
    def approval_ttl_seconds(self) -> float:
        return parse_duration(self.approval_ttl)


class Thresholds(BaseModel):
    """Warning and critical levels of the health assessment."""

    error_rate: tuple[float, float] = (0.01, 0.05)
    latency_p99_seconds: tuple[float, float] = (0.5, 2.0)
    cpu_ratio: tuple[float, float] = (0.8, 0.95)
    memory_ratio: tuple[float, float] = (0.8, 0.95)
    restarts: tuple[float, float] = (1, 5)

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        for name, (warning, critical) in self.model_dump().items():
            if warning > critical:
                raise ValueError(f"{name}: warning {warning} is above critical {critical}")
        return self


class ServiceConfig(BaseModel):
    """One service of the catalog ([services.NAME])."""

    name: str = ""
    namespace: str | None = None
    deployment: str | None = None
    aliases: list[str] = []
    owners: list[str] = []
    dashboard: str | None = None
    runbook: str | None = None
    logs: str | None = None
    cost_tag: str | None = None
    metrics: dict[str, str] = {}


SERVICE_LABELS = ["service", "app", "deployment", "namespace", "pod", "job"]


class AlertDestination(BaseModel):
    """Where alert threads go: a Slack channel, or a Teams channel — its conversation id (`19:…@thread.tacv2`),
    the Bot Connector `serviceUrl` of its team (from configuration only, never from an alert; it must be a
    Teams / Bot Framework host or a SREBOT_TEAMS_SERVICE_URLS prefix) and its tenant (default
    MICROSOFT_APP_TENANT_ID)."""

    slack_channel: str | None = None
    teams_conversation: str | None = None
    teams_service_url: str | None = None
    teams_tenant_id: str | None = None

    @field_validator("teams_service_url")
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _teams_fields(self) -> "AlertDestination":
        if self.teams_conversation:
            if not self.teams_service_url:
                raise ValueError("teams_conversation needs teams_service_url (the serviceUrl Teams uses for that team)")
            if ";" in self.teams_conversation:
                raise ValueError("teams_conversation is a channel's conversation id, without ';messageid=…'")
        elif self.teams_service_url or self.teams_tenant_id:
            raise ValueError("teams_service_url and teams_tenant_id belong with a teams_conversation")
        return self


class AlertRoute(AlertDestination):
    """One [[alerts.routes]] entry: alerts whose labels equal every `match` value go to its destination."""

    match: dict[str, str]

    @model_validator(mode="after")
    def _one_destination(self) -> "AlertRoute":
        if not self.match:
            raise ValueError("match needs at least one label (an empty match is the default destination)")
        if bool(self.slack_channel) == bool(self.teams_conversation):
            raise ValueError("give exactly one of slack_channel or teams_conversation")
        return self


class AlertsConfig(AlertDestination):
    """[alerts] (DESIGN 3.9): where alert threads go (the default destination, and routes), how the service is
    found, how often one is re-investigated."""

    service_labels: list[str] = Field(default_factory=lambda: list(SERVICE_LABELS))
    cooldown: str = "30m"
    routes: list[AlertRoute] = []
    # the control plane's firing alerts polled into the same threads (off unless asked for)
    poll_control_plane: bool = False
    poll_interval: str = "1m"
    silence_duration: str = "1h"

    @field_validator("cooldown", "poll_interval", "silence_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _duration_text(value)

    @model_validator(mode="after")
    def _one_default(self) -> "AlertsConfig":
        if self.slack_channel and self.teams_conversation:
            raise ValueError("give one default destination: slack_channel or teams_conversation")
        return self

    @property
    def cooldown_seconds(self) -> float:
        return parse_duration(self.cooldown)

    @property
    def poll_seconds(self) -> float:
        return parse_duration(self.poll_interval)

    @property
    def silence_seconds(self) -> float:
        return parse_duration(self.silence_duration)


class KindGrants(BaseModel):
    """Who may propose and approve one kind of write action ([policy.kinds.KIND])."""

    model_config = {"extra": "forbid"}

    propose: list[str] | None = None
    approve: list[str] | None = None


class Grants(BaseModel):
    """Who may ask, propose and approve: user ids, group ids or "*" (bot.policy)."""

    model_config = {"extra": "forbid"}

    ask: list[str] | None = None
    propose: list[str] | None = None
    approve: list[str] | None = None
    kinds: dict[str, KindGrants] = {}


class PolicyConfig(Grants):
    """[policy]: the defaults, and [policy.channels.ID] per Slack channel / Teams conversation / "terminal"
    ("*": every channel not listed)."""

    channels: dict[str, Grants] = {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=False)

    database_url: str = "sqlite+aiosqlite:///srebot.db"
    port: int = Field(3000, ge=1, le=65535)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    microsoft_app_id: str = ""
    microsoft_app_password: SecretStr = SecretStr("")
    microsoft_app_tenant_id: str = ""
    microsoft_app_type: Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"] = "SingleTenant"
    teams_enabled: bool = Field(True, validation_alias=AliasChoices("srebot_teams", "teams_enabled"))
    # "local": Teams without credentials, for local testing only (serve then listens on loopback only)
    teams_insecure: Literal["", "local"] = Field(
        "", validation_alias=AliasChoices("srebot_teams_insecure", "teams_insecure")
    )
    # serviceUrl prefixes replies may go to besides the Bot Framework / Teams service hosts
    teams_service_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("srebot_teams_service_urls", "teams_service_urls")
    )
    # where the signing keys of Bot Framework tokens are published (tests, sovereign clouds)
    teams_openid_metadata: str | None = Field(
        None, validation_alias=AliasChoices("srebot_teams_openid_metadata", "teams_openid_metadata")
    )

    prometheus_url: str | None = None
    loki_url: str | None = None
    grafana_url: str | None = None

    kubeconfig: str | None = None
    kube_context: str | None = Field(None, validation_alias=AliasChoices("srebot_kube_context", "kube_context"))
    kubernetes: Literal["auto", "off"] = Field("auto", validation_alias=AliasChoices("srebot_kubernetes", "kubernetes"))

    kubernetes_service_host: str | None = None  # set by Kubernetes in every pod: in-cluster config

    aws_region: str | None = Field(None, validation_alias=AliasChoices("aws_region", "aws_default_region"))
    aws_profile: str | None = None
    aws_endpoint_url: str | None = None
    cost: Literal["on", "off"] = Field("on", validation_alias=AliasChoices("srebot_cost", "cost"))
    cost_tag_key: str = Field("service", validation_alias=AliasChoices("srebot_cost_tag_key", "cost_tag_key"))

    control_plane_url: str | None = None
    control_plane_token_url: str | None = None
    control_plane_client_id: str | None = None
    control_plane_client_secret: SecretStr | None = None

    alerts_token: SecretStr | None = Field(None, validation_alias=AliasChoices("srebot_alerts_token", "alerts_token"))
    alertmanager_url: str | None = None

    google_api_key: SecretStr | None = None
    google_gemini_base_url: str | None = None
    model: str = Field("gemini-2.5-flash", validation_alias=AliasChoices("srebot_model", "model"))
    llm_token_budget: int = Field(
        20000, ge=1000, validation_alias=AliasChoices("srebot_llm_token_budget", "llm_token_budget")
    )

    approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("srebot_approvers", "approvers")
    )
    log_format: Literal["json", "text"] | None = Field(
        None, validation_alias=AliasChoices("srebot_log_format", "log_format")
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("srebot_log_level", "log_level"))

    max_concurrency: int = Field(
        16, ge=1, le=1000, validation_alias=AliasChoices("srebot_max_concurrency", "max_concurrency")
    )
    request_timeout: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("srebot_request_timeout", "request_timeout")
    )
    drain_seconds: float = Field(20.0, ge=0, validation_alias=AliasChoices("srebot_drain_seconds", "drain_seconds"))
    # admission (README "Performance"): past max_concurrency a request waits in the process's queue,
    # past max_queued more it is told at once that the bot is overloaded
    max_queued: int = Field(100, ge=0, le=100_000, validation_alias=AliasChoices("srebot_max_queued", "max_queued"))
    # the database connection pool, and how long all database steps of one request may take, retries included
    db_pool_size: int = Field(10, ge=1, le=1000, validation_alias=AliasChoices("srebot_db_pool_size", "db_pool_size"))
    db_pool_overflow: int = Field(
        10, ge=0, le=1000, validation_alias=AliasChoices("srebot_db_pool_overflow", "db_pool_overflow")
    )
    db_pool_wait: float = Field(10.0, gt=0, validation_alias=AliasChoices("srebot_db_pool_wait", "db_pool_wait"))
    db_deadline: float = Field(30.0, gt=0, validation_alias=AliasChoices("srebot_db_deadline", "db_deadline"))
    approval_sweep_seconds: float = Field(
        15.0, gt=0, validation_alias=AliasChoices("srebot_approval_sweep_seconds", "approval_sweep_seconds")
    )
    tool_timeout: float = Field(10.0, gt=0, validation_alias=AliasChoices("srebot_tool_timeout", "tool_timeout"))
    # crash recovery (DESIGN 6): every process beats this often; a replica whose beat is older than
    # `instance_stale_seconds` is taken for dead and its unfinished turns are reported as interrupted
    heartbeat_seconds: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("srebot_heartbeat_seconds", "heartbeat_seconds")
    )
    instance_stale_seconds: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("srebot_instance_stale_seconds", "instance_stale_seconds")
    )

    defaults: Defaults = Defaults()
    thresholds: Thresholds = Thresholds()
    services: dict[str, ServiceConfig] = {}
    alerts: AlertsConfig = AlertsConfig()
    policy: PolicyConfig | None = None  # None: no [policy] table, the pre-policy behaviour (bot.policy)

    config_file: str | None = None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_url(value)

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("approvers", "teams_service_urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("teams_service_urls")
    @classmethod
    def _service_url_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not re.match(r"^https?://[^\s/]+", prefix):
                raise ValueError(f"{prefix!r} is not an http(s) URL prefix")
        return value

    @model_validator(mode="after")
    def _teams_credentials(self) -> "Settings":
        """With an app id, the app type decides which other credentials Teams needs."""
        if self.teams_mode != "auth":
            return self
        if self.microsoft_app_type == "SingleTenant" and not self.microsoft_app_tenant_id.strip():
            raise ValueError(
                "MICROSOFT_APP_TENANT_ID is required with MICROSOFT_APP_TYPE=SingleTenant (the default); "
                "set it to the bot's Entra tenant id"
            )
        if self.microsoft_app_type != "UserAssignedMSI" and not self.microsoft_app_password.get_secret_value():
            raise ValueError(f"MICROSOFT_APP_PASSWORD is required with MICROSOFT_APP_TYPE={self.microsoft_app_type}")
        return self

    @field_validator(
        "prometheus_url", "loki_url", "grafana_url", "control_plane_url", "aws_endpoint_url", "alertmanager_url"
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^https?://[^\s/]+", value.strip()):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _names(self) -> "Settings":
        for name, service in self.services.items():
            service.name = name
        return self

    @field_validator("instance_stale_seconds")
    @classmethod
    def _longer_than_a_beat(cls, value: float, info: ValidationInfo) -> float:
        beat = info.data.get("heartbeat_seconds")
        if beat is not None and value <= beat:
            raise ValueError(f"must be longer than SREBOT_HEARTBEAT_SECONDS ({beat:g}), or live replicas are taken for dead")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() merges file and environment itself, so a test decides exactly what is read.
        return (init_settings,)

    # --- derived -----------------------------------------------------------------------------
    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None and bool(self.slack_bot_token.get_secret_value())

    @property
    def alerts_enabled(self) -> bool:
        """POST /alerts/alertmanager exists only with a token to check (else it answers 404)."""
        return self.alerts_token is not None and bool(self.alerts_token.get_secret_value())

    @property
    def teams_mode(self) -> Literal["off", "local", "auth"]:
        """Teams is off unless configured: "auth" with an app id (every request's token validated),
        "local" only with the explicit SREBOT_TEAMS_INSECURE=local, otherwise (or SREBOT_TEAMS=off) "off"."""
        if not self.teams_enabled:
            return "off"
        if self.microsoft_app_id.strip():
            return "auth"
        return "local" if self.teams_insecure == "local" else "off"

    @property
    def llm_enabled(self) -> bool:
        return self.google_api_key is not None and bool(self.google_api_key.get_secret_value())

    @property
    def kube_in_cluster(self) -> bool:
        return bool(self.kubernetes_service_host) and not self.kubeconfig

    @property
    def kubernetes_enabled(self) -> bool:
        """On with SREBOT_KUBERNETES=auto when there is a cluster to talk to: in a pod, KUBECONFIG,
        or the default ~/.kube/config."""
        if self.kubernetes == "off":
            return False
        return self.kube_in_cluster or bool(self.kubeconfig) or (Path.home() / ".kube" / "config").is_file()

    @property
    def cost_enabled(self) -> bool:
        """Cost Explorer is asked only when AWS is set up here (a region or a profile) and not switched off."""
        return self.cost == "on" and bool(self.aws_region or self.aws_profile or self.aws_endpoint_url)

    def service(self, name: str) -> ServiceConfig | None:
        """The catalog entry for a name or alias (case-insensitive), with defaults filled in."""
        wanted = name.strip().lower()
        for key, service in self.services.items():
            if wanted == key.lower() or wanted in (a.lower() for a in service.aliases):
                return self.complete(service)
        return None

    def complete(self, service: ServiceConfig) -> ServiceConfig:
        """Fill a service's namespace, deployment and log selector from the defaults."""
        namespace = service.namespace or self.defaults.namespace
        return service.model_copy(
            update={
                "namespace": namespace,
                "deployment": service.deployment or service.name,
                "logs": service.logs or f'{{namespace="{namespace}", app="{service.name}"}}',
            }
        )


def load_settings(env: dict[str, str] | None = None, config_path: str | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (SREBOT_CONFIG or ./srebot.toml) overridden by the environment.

    Raises ConfigError naming the offending key; never a traceback for a bad value.
    """
    environ = dict(os.environ if env is None else env)
    path = config_path or environ.get("SREBOT_CONFIG") or ("srebot.toml" if Path("srebot.toml").is_file() else None)
    file_values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                file_values = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"SREBOT_CONFIG: file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"SREBOT_CONFIG: {path} is not valid TOML: {exc}") from None
        file_values = _flatten_sections(file_values)
    env_values = {k.lower(): v for k, v in environ.items() if _is_setting(k)}
    values = {**file_values, **env_values, **overrides, "config_file": path}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


_SECTIONS = {"defaults", "thresholds", "services", "policy", "alerts"}


def _env_names(name: str, alias: object) -> set[str]:
    # An aliased field is read from the environment under its aliases only (SREBOT_MODEL, not MODEL).
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str) and choice != name}
    return {name}


_ENV_KEYS = {
    env_name
    for name, info in Settings.model_fields.items()
    if name not in _SECTIONS and name != "config_file"
    for env_name in _env_names(name, info.validation_alias)
}


def _is_setting(key: str) -> bool:
    return key.lower() in _ENV_KEYS


def _flatten_sections(values: dict[str, Any]) -> dict[str, Any]:
    """TOML may group scalar settings in tables ([srebot], [slack], ...); the catalog tables stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in _SECTIONS:
            flat.update({k.lower(): v for k, v in value.items()})
        else:
            flat[key.lower()] = value
    return flat


def _describe(exc: ValidationError, path: str | None) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        # top-level keys are named as environment variables, nested ones as TOML paths
        from_file = "." in key or key in _SECTIONS
        name = key + (f" (in {path})" if path else "") if from_file else key.upper()
        # a check across settings (a model validator) has no key of its own; its message names them
        problems.append(f"{name}: {error['msg']}" if key else error["msg"].removeprefix("Value error, "))
    return "invalid configuration: " + "; ".join(problems)
