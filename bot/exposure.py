"""What a configuration exposes that it must not: the reasons `srebot check` fails (and `serve` warns).

Each rule looks at the settings alone and, when it applies, says what is exposed and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings

Rule = Callable[[Settings], str | None]


def _slack_http_unverifiable(settings: Settings) -> str | None:
    if settings.slack_enabled and settings.slack_app_token is None and settings.slack_signing_secret is None:
        return (
            "Slack over HTTP without SLACK_SIGNING_SECRET: no request can be verified, so every one is refused; "
            "set the signing secret (or SLACK_APP_TOKEN for Socket Mode)"
        )
    return None


def _teams_unauthenticated(settings: Settings) -> str | None:
    if settings.teams_mode == "local":
        return (
            "Teams accepts unauthenticated requests (SREBOT_TEAMS_INSECURE=local); set MICROSOFT_APP_ID, "
            "MICROSOFT_APP_PASSWORD and MICROSOFT_APP_TENANT_ID outside local testing"
        )
    return None


RULES: list[Rule] = [_slack_http_unverifiable, _teams_unauthenticated]


def insecurities(settings: Settings) -> list[str]:
    """Why this configuration is insecure, one reason per line; empty when it is not."""
    return [reason for rule in RULES if (reason := rule(settings)) is not None]
