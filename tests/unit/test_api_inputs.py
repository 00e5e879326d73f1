"""Pure pieces of the API's input safety: strict JSON, safe text, CSV cell neutralising, key material,
the operator key's sources, problem bodies that never fail to serialise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, SecretStr, ValidationError

from services.orchestrator import keys as operator_keys
from services.orchestrator.accounts import keys
from services.orchestrator.safetext import describe_bad_char
from services.orchestrator.sites.export import render_csv, safe_cell
from services.orchestrator.web.jsonbody import strict_loads
from services.orchestrator.web.problems import FieldError, problem_response
from services.orchestrator.web.types import SafeLine, SafeText
from shared.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 1234", "'+49 30 1234"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tindent", "'\tindent"),
        ("\rcarriage", "'\rcarriage"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-5, "-5"),  # a number the export wrote itself is data, not a formula
        (3.5, "3.5"),
    ],
)
def test_safe_cell(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


def test_render_csv_neutralises_every_cell_and_quotes_properly() -> None:
    out = render_csv(["=h"], [['=cmd|" /C calc"!A0'], ["a,b"]])
    assert out.splitlines() == ["'=h", "\"'=cmd|\"\" /C calc\"\"!A0\"", '"a,b"']


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"a": NaN}', ("body", "a")),
        (b'{"a": [1, Infinity]}', ("body", "a", 1)),
        (b'{"a": -Infinity}', ("body", "a")),
        (b'{"a": 1e309}', ("body", "a")),
        (b'{"a": "x\\u0000"}', ("body", "a")),
        (b'{"a": "\\ud800"}', ("body", "a")),
        (b'{"a\\u0007": 1}', ("body", "<key>")),
        (b'{"a": ', ("body",)),
        (b"\xff\xfe", ("body",)),
        (b"[" * 100_000, ("body",)),
        (b'{"a": 1' + b"0" * 5000 + b"}", ("body",)),
    ],
)
def test_strict_json_names_the_field(body: bytes, loc: tuple[object, ...]) -> None:
    with pytest.raises(RequestValidationError) as info:
        strict_loads(body)
    error = info.value.errors()[0]
    assert tuple(error["loc"]) == loc
    json.dumps(info.value.errors(), allow_nan=False)  # the error itself always serialises


def test_strict_json_keeps_good_input() -> None:
    assert strict_loads(b'{"a": 1.5, "b": "tab\\tnew\\nline", "c": [1e300, -0.0], "d": "\\ud83d\\ude00"}') == {
        "a": 1.5,
        "b": "tab\tnew\nline",
        "c": [1e300, -0.0],
        "d": "😀",
    }


class _Form(BaseModel):
    text: SafeText = ""
    line: SafeLine = ""


def test_safe_text_types() -> None:
    assert _Form(text="a\tb\nc", line="plain").text == "a\tb\nc"
    for bad in ({"text": "a\x00"}, {"text": "\ud800"}, {"line": "a\nb"}, {"line": "\x1b[31m"}):
        with pytest.raises(ValidationError):
            _Form.model_validate(bad)
    assert describe_bad_char("ok\x7f") is None
    assert describe_bad_char("x\x00") == "contains a control character (U+0000) at position 1"


def test_key_material() -> None:
    key_id, whole = keys.new_key()
    assert keys.key_id_of(whole) == key_id
    assert keys.key_id_of(whole + "x") is None and keys.key_id_of("cl_nothex_x") is None
    assert keys.same_hash(keys.hash_key(whole), keys.hash_key(whole))
    assert len({keys.new_key()[1] for _ in range(100)}) == 100


def test_operator_key_sources(tmp_path: Path) -> None:
    secret = "k" * 32
    assert operator_keys.operator_key(Settings(operator_key=SecretStr(secret))).get_secret_value() == secret
    path = tmp_path / "operator.key"
    path.write_text(secret + "\n")
    assert operator_keys.operator_key(Settings(operator_key_file=path)).get_secret_value() == secret
    assert operator_keys.operator_key(Settings()) is None
    with pytest.raises(ValueError, match="at least"):
        operator_keys.operator_key(Settings(operator_key=SecretStr("short")))
    with pytest.raises(ValueError, match="not both"):
        operator_keys.operator_key(Settings(operator_key=SecretStr(secret), operator_key_file=path))
    with pytest.raises(ValueError, match="cannot read"):
        operator_keys.operator_key(Settings(operator_key_file=tmp_path / "missing"))
    assert secret not in repr(Settings(operator_key=SecretStr(secret)))


def test_problem_bodies_survive_hostile_text() -> None:
    r = problem_response(
        422, "bad \x00 \ud800", errors=[FieldError(field="body.\ud800", reason="\x07")], extra={"n": float("nan")}
    )
    body = json.loads(r.body)
    assert body["status"] == 422 and body["detail"] == "bad \\u0000 \\ud800" and body["n"] == "nan"
    assert r.media_type == "application/problem+json"
