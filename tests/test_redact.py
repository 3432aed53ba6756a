"""Secrets are masked wherever they appear, and the text around them survives intact."""

from __future__ import annotations

import json

import pytest

from tools.redact import MASK, redact, redact_data, redact_lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(password=hunter2)", f"(password={MASK})"),
        ("x (token=abc) y", f"x (token={MASK}) y"),
        ("[api_key=XYZ123]", f"[api_key={MASK}]"),
        ("token: abc123def”.", f"token: {MASK}”."),
        ('password="a b c" next', f"password={MASK} next"),
        ("Authorization: Bearer abcdefghijk)", f"Authorization: {MASK})"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', f'{{"Authorization": "{MASK}"}}'),
        ("dsn postgres://app:s3cret@db:5432/shop", f"dsn postgres://app:{MASK}@db:5432/shop"),
        ("slack xoxb-1234567890-abcdefghij done", f"slack {MASK} done"),
        ("aws AKIAABCDEFGHIJKLMNOP key", f"aws {MASK} key"),
        ("nothing secret here: error rate 8.3%", "nothing secret here: error rate 8.3%"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(redact(text)) == expected  # redacting twice changes nothing


def test_redacted_json_stays_json() -> None:
    document = json.dumps({"msg": "login with password=hunter2", "headers": {"Authorization": "Bearer abcdefghijkl"}})
    parsed = json.loads(redact(document))
    assert "hunter2" not in json.dumps(parsed) and "abcdefghijkl" not in json.dumps(parsed)


def test_redact_data_masks_secret_keys_whole() -> None:
    data = {"client_secret": "abc", "nested": [{"api_key": 12345, "name": "checkout"}], "note": "token=zzz"}
    assert redact_data(data) == {
        "client_secret": MASK,
        "nested": [{"api_key": MASK, "name": "checkout"}],
        "note": f"token={MASK}",
    }


PEM = [
    "-----BEGIN PRIVATE KEY-----",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
    "-----END PRIVATE KEY-----",
]


@pytest.mark.parametrize(
    "value",
    ["hunter2", 123456, {"from": "old-pw", "to": "new-pw"}, ["a-token", "b-token"], {"deep": {"er": "x1"}}],
)
def test_a_secret_named_key_is_masked_whatever_the_shape_of_its_value(value: object) -> None:
    assert redact_data({"changes": {"db_password": value, "replicas": {"from": 3, "to": 4}}}) == {
        "changes": {"db_password": MASK, "replicas": {"from": 3, "to": 4}}
    }
    # the same data written as text (a JSON log line, a Python repr) is masked up to its closing bracket
    for text in (json.dumps({"db_password": value, "next": "kept"}), repr({"db_password": value, "next": "kept"})):
        masked = redact(text)
        assert "kept" in masked and all(str(part) not in masked for part in _leaves(value)), masked


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_name_value_pairs_naming_a_secret_are_masked() -> None:
    env = [{"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "LOG_LEVEL", "value": "debug"}]
    assert redact_data(env) == [{"name": "DB_PASSWORD", "value": MASK}, {"name": "LOG_LEVEL", "value": "debug"}]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["before", *PEM, "after"], ["before", MASK, MASK, MASK, MASK, "after"]),
        # a logger prefixing every line of a multi-line message
        ([f"E tls: {line}" for line in PEM], [f"E tls: {MASK}", MASK, MASK, MASK]),
        # cut by the window: the END without its BEGIN, the BEGIN without its END
        (["before", *PEM[2:], "after"], ["before", MASK, MASK, "after"]),
        (["before", *PEM[:2]], ["before", MASK, MASK]),
        # a body line alone (the query's filter dropped the rest)
        (["ok", PEM[1], "ok"], ["ok", MASK, "ok"]),
    ],
)
def test_a_private_key_over_several_log_entries_is_masked_from_begin_to_end(lines: list[str], expected: list[str]) -> None:
    assert redact_lines(lines) == expected
    assert redact_lines(redact_lines(lines)) == expected


def test_a_private_key_in_one_text_is_masked_even_when_cut() -> None:
    assert redact("\n".join(["x", *PEM, "y"])) == "\n".join(["x", MASK, MASK, MASK, MASK, "y"])
    assert PEM[1] not in redact("\n".join(PEM[1:])) and PEM[2] not in redact("\n".join(PEM[:3]))
