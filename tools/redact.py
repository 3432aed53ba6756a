"""Removes secrets (tokens, keys, passwords, connection strings, Authorization headers) from text and data."""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"
# A secret value: up to whitespace, a separator or a closing bracket/quote (which belong to the text
# around it), and never the mask itself, so redacting twice changes nothing.
_VALUE = r"(?!\[REDACTED\])[^\s\"',;&(){}\[\]<>”’]+"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization / Proxy-Authorization headers and bare bearer tokens
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)" + _VALUE + r"(?:\s+" + _VALUE + ")?"), r"\1" + MASK),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer " + MASK),
    # credentials inside URLs / connection strings: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(@)"), r"\1" + MASK + r"\2"),
    # key=value and "key": "value" for secret-looking keys
    (
        re.compile(
            r"(?i)([\"']?\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|signing[_-]?secret)[\w.-]*[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|" + _VALUE + ")"
        ),
        r"\1" + MASK,
    ),
    # well-known token shapes
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),  # Slack tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), MASK),  # Slack app-level tokens
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),  # Google API keys
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), MASK),  # JWTs
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), MASK),  # GitHub tokens
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
]

_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|credential)"
)


def redact(text: str) -> str:
    """Mask every secret-looking part of `text`."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_data(value: Any) -> Any:
    """Redact strings inside nested dicts/lists; values under secret-looking keys are masked whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, (str, int)) else redact_data(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value
