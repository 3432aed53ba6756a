"""Where an alert group goes and which service it is about, from its labels, the [alerts] routes and the catalog (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import AlertDestination, AlertsConfig, Settings

# a pod's name ends with what its controller added: Deployment "-<template hash>-<5>", StatefulSet "-<ordinal>",
# DaemonSet or Job "-<5>"; without it, it is the workload's name
_POD_SUFFIX = (re.compile(r"^(.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$"), re.compile(r"^(.+)-\d+$"), re.compile(r"^(.+)-[a-z0-9]{5}$"))


@dataclass(frozen=True)
class Destination:
    platform: str  # slack | teams
    channel: str  # a Slack channel id, or a Teams channel's conversation id
    service_url: str | None = None  # Teams: the Bot Connector to post through, from configuration only
    tenant: str | None = None  # Teams: the channel's tenant (None: the bot's own)


@dataclass(frozen=True)
class ServiceMatch:
    """The service an alert group is about: a catalog name when one matches, and every candidate name from the
    labels in the configured order (the engine may still find a candidate as a Kubernetes deployment)."""

    name: str | None
    candidates: tuple[str, ...]

    @property
    def shown(self) -> str | None:
        return self.name or (self.candidates[0] if self.candidates else None)


def destination(config: AlertsConfig, labels: dict[str, str]) -> Destination | None:
    """The first route whose every matcher equals the label, else the default; None when neither is set."""
    for route in config.routes:
        if all(labels.get(name) == value for name, value in route.match.items()):
            return _dest(route)
    return _dest(config)


def configured(config: AlertsConfig) -> list[tuple[str, Destination]]:
    """Every destination the configuration names, with the key that names it (for checks at start)."""
    found = [(f"alerts.routes.{index}", _dest(route)) for index, route in enumerate(config.routes)]
    return [(where, dest) for where, dest in [("alerts", _dest(config)), *found] if dest is not None]


def _dest(entry: AlertDestination) -> Destination | None:
    if entry.slack_channel:
        return Destination("slack", entry.slack_channel)
    if entry.teams_conversation:
        return Destination("teams", entry.teams_conversation, entry.teams_service_url, entry.teams_tenant_id)
    return None


def workload(pod: str) -> str:
    """checkout-7c9f8d6b5d-x2k9p → checkout; kafka-2 → kafka."""
    for pattern in _POD_SUFFIX:
        match = pattern.match(pod)
        if match:
            return match.group(1)
    return pod


def candidates(labels: dict[str, str], service_labels: list[str]) -> tuple[str, ...]:
    """Label values that may name the service, in the configured order, without repeats."""
    found: list[str] = []
    for name in service_labels:
        value = (labels.get(name) or "").strip()
        if not value:
            continue
        value = workload(value) if name == "pod" else value
        if value not in found:
            found.append(value)
    return tuple(found)


def find_service(settings: Settings, labels: dict[str, str]) -> ServiceMatch:
    """The catalog service the labels name (by name, alias or deployment), or only the candidates."""
    names = candidates(labels, settings.alerts.service_labels)
    namespace = labels.get("namespace")
    for value in names:
        service = settings.service(value)
        if service is not None:
            return ServiceMatch(service.name, names)
        for key, entry in settings.services.items():
            full = settings.complete(entry)
            if full.deployment == value and (namespace is None or full.namespace == namespace):
                return ServiceMatch(key, names)
    return ServiceMatch(None, names)
