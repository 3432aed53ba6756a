"""Secrets are masked wherever they appear, and the text around them survives intact."""

from __future__ import annotations

import json

import pytest

from tools.redact import MASK, redact, redact_data


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
