"""Removes secrets (tokens, keys, passwords, connection strings, Authorization headers, private keys) from
text, from lines read one by one, and from data whatever the shape of a secret's value."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
# A secret value: up to whitespace, a separator or a closing bracket/quote (which belong to the text
# around it), and never the mask itself, so redacting twice changes nothing.
_VALUE = r"(?!\[REDACTED\])[^\s\"',;&(){}\[\]<>”’]+"
_SECRET_WORDS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|"
    r"signing[_-]?secret|credential"
)
# a secret-looking key and its separator, in key=value, key: value and "key": value
_KEY = r"(?i)([\"']?\b[\w.-]*(?:" + _SECRET_WORDS + r")[\w.-]*[\"']?\s*[:=]\s*)"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization / Proxy-Authorization headers and bare bearer tokens
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)" + _VALUE + r"(?:\s+" + _VALUE + ")?"), r"\1" + MASK),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer " + MASK),
    # credentials inside URLs / connection strings: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(@)"), r"\1" + MASK + r"\2"),
    # key=value and "key": "value" for secret-looking keys (structured values: see _mask_structures)
    (re.compile(_KEY + r"(\"[^\"]*\"|'[^']*'|" + _VALUE + ")"), r"\1" + MASK),
    # well-known token shapes
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),  # Slack tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), MASK),  # Slack app-level tokens
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),  # Google API keys
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), MASK),  # JWTs
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), MASK),  # GitHub tokens
]

_SECRET_KEY = re.compile(r"(?i)(" + _SECRET_WORDS + r"|authorization)")
# a secret-named key whose value is an object or a list: "db_password": {"from": …, "to": …}
_STRUCTURE_START = re.compile(_KEY + r"(?=[\[{])")

_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# a line of a PEM body (base64, 64 columns by convention) or one of its headers (Proc-Type: …)
_PEM_BODY = re.compile(r"^\s*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: [^\s]+)\s*$")
# a line that is nothing but a long run of base64: key material seen without its BEGIN/END (a log query's
# filter or window cut them off); never a message a person needs to read
_KEY_MATERIAL = re.compile(r"^\s*(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+/]{40,}={0,2}\s*$")


def redact(text: str) -> str:
    """Mask every secret-looking part of `text`, including a private key over several lines of it."""
    if not text:
        return text
    text = _redact_line(text)
    if "PRIVATE KEY-----" in text:
        text = "\n".join(_mask_keys(text.split("\n")))
    return text


def redact_lines(lines: Iterable[str]) -> list[str]:
    """Redact lines that were read one by one (log entries of one stream, oldest first) as the text they
    make together: a private key written one line per entry is masked from its BEGIN line to its END
    line; a key cut off by the window (an END without its BEGIN, a BEGIN without its END) from the first
    body line seen, or to the last line."""
    return _mask_keys([MASK if _KEY_MATERIAL.match(line) else _redact_line(line) for line in lines])


def _redact_line(text: str) -> str:
    text = _mask_structures(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _mask_keys(lines: list[str]) -> list[str]:
    """Private keys over `lines` masked from BEGIN to END (see redact_lines); as many lines come out as go in."""
    out: list[str] = []
    inside = False
    for line in lines:
        if inside:
            end = _PEM_END.search(line)
            if end is None:
                out.append(MASK)
                continue
            inside = False
            out.append(MASK + line[end.end():])
            continue
        begin = _PEM_BEGIN.search(line)
        end = _PEM_END.search(line)
        if begin is not None and (end is None or end.start() < begin.start()):
            if end is not None:  # the tail of one key, then the head of the next, on one line
                line = MASK + line[end.end():]
                begin = _PEM_BEGIN.search(line)
                assert begin is not None
            inside = True
            out.append(line[: begin.start()] + MASK)
            continue
        if begin is not None and end is not None:
            out.append(line[: begin.start()] + MASK + line[end.end():])
            continue
        if end is not None:  # its BEGIN was before what we were given: mask the body lines before it
            index = len(out) - 1
            while index >= 0 and (out[index] == MASK or _PEM_BODY.match(out[index])):
                out[index] = MASK
                index -= 1
            out.append(MASK + line[end.end():])
            continue
        out.append(line)
    return out


def redact_data(value: Any) -> Any:
    """Redact strings inside nested dicts/lists. A value under a secret-looking key is masked whole,
    whatever its shape (a string, a number, {"from": …, "to": …}, a list, an object); so is the `value`
    of a {"name": "DB_PASSWORD", "value": …} pair."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        named = next((value[k] for k in ("name", "key") if isinstance(value.get(k), str)), None)
        secret_pair = named is not None and _SECRET_KEY.search(named) is not None
        return {
            k: (
                MASK
                if v is not None and isinstance(k, str) and (_SECRET_KEY.search(k) or (secret_pair and k == "value"))
                else redact_data(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value


def _mask_structures(text: str) -> str:
    """An object or list after a secret-looking key, in text (JSON, a Python repr), masked whole up to
    its closing bracket; a structure left open by a cut masks the rest of the text."""
    if "{" not in text and "[" not in text:
        return text
    out: list[str] = []
    position = 0
    while (match := _STRUCTURE_START.search(text, position)) is not None:
        start = match.end()
        out.append(text[position:start] + MASK)
        position = _closing(text, start)
    out.append(text[position:])
    return "".join(out)


def _closing(text: str, start: int) -> int:
    """The index after the bracket closing the one at `start` (quotes respected), or the end of the text."""
    depth, quote, escaped = 0, "", False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)
