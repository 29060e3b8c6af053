"""The control protocol on its own: keys on disk, signatures, replays, hostile samples."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsource.stream.control_auth import (
    MAX_COMMAND_BYTES,
    PREVIEW_CHARS,
    PROTOCOL,
    Command,
    CommandVerifier,
    ControlKeyError,
    Refusal,
    TokenBucket,
    default_key_path,
    ensure_key,
    max_depth,
    parse_flat_object,
    read_key,
    sign_command,
)

NAME = "loop-A"


@pytest.fixture
def key(tmp_path):
    return ensure_key(tmp_path / "keys" / "a.key")


def test_key_file_is_created_private_and_read_back(tmp_path):
    path = tmp_path / "keys" / "a.key"
    key = ensure_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_key(path) == key == read_key(path)  # created once, then reused
    assert ensure_key(tmp_path / "keys" / "b.key") != key


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "a.key"
    ensure_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ControlKeyError, match="chmod 600"):
        read_key(path)
    with pytest.raises(ControlKeyError, match="readable by others"):
        ensure_key(path)  # never silently replaced or used


def test_missing_key_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(ControlKeyError, match="rtsource run.*--key-file"):
        read_key(tmp_path / "nope.key")


def test_symlinked_key_is_refused(tmp_path):
    real = tmp_path / "real.key"
    ensure_key(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(ControlKeyError):
        read_key(link)


def test_default_key_path_per_output_name(monkeypatch, tmp_path):
    monkeypatch.setenv("RTSOURCE_CONTROL_DIR", str(tmp_path))
    assert default_key_path("rtsource-sources") == tmp_path / "rtsource-sources.key"
    odd = default_key_path("../../etc/x y")
    assert odd.parent == tmp_path and "/" not in odd.name and odd != default_key_path("../../etc/x_y")
    monkeypatch.delenv("RTSOURCE_CONTROL_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert default_key_path("a") == tmp_path / "run" / "rtsource" / "a.key"


def test_signed_command_is_accepted_once(key):
    v = CommandVerifier(key, NAME)
    wire = sign_command(key, NAME, "mark_bad", "Cz", command_id="abc123")
    cmd = v.check(wire.encode())
    assert isinstance(cmd, Command) and (cmd.id, cmd.command, cmd.channel) == ("abc123", "mark_bad", "Cz")
    again = v.check(wire.encode())
    assert isinstance(again, Refusal) and again.reason == "replayed" and again.id == "abc123"


def test_wrong_key_and_other_loop_are_unauthenticated(key, tmp_path):
    other = ensure_key(tmp_path / "other.key")
    v = CommandVerifier(key, NAME)
    r = v.check(sign_command(other, NAME, "mark_bad", "Cz", command_id="x1").encode())
    assert isinstance(r, Refusal) and r.reason == "unauthenticated" and r.id == "x1" and r.channel == "Cz"
    r = v.check(sign_command(key, "loop-B", "mark_bad", "Cz").encode())  # signed for another loop
    assert r.reason == "unauthenticated"
    wire = sign_command(key, NAME, "mark_bad", "Cz")
    tampered = wire.replace('"Cz"', '"Fz"')
    assert v.check(tampered.encode()).reason == "unauthenticated"
    unsigned = json.dumps({"command": "mark_bad", "channel": "Cz"})
    assert v.check(unsigned.encode()).reason == "malformed"


def test_old_commands_are_refused_after_the_window(key):
    v = CommandVerifier(key, NAME, window_s=30.0)
    now = time.time()
    assert v.check(sign_command(key, NAME, "mark_bad", "Cz", now=now - 31).encode(), now=now).reason == "expired"
    assert v.check(sign_command(key, NAME, "mark_bad", "Cz", now=now + 31).encode(), now=now).reason == "expired"
    ok = sign_command(key, NAME, "mark_bad", "Cz", now=now - 29)
    assert isinstance(v.check(ok.encode(), now=now), Command)
    # once the window has passed the id may be forgotten, but the age refuses it
    assert v.check(ok.encode(), now=now + 0.5).reason == "replayed"
    assert v.check(ok.encode(), now=now + 60).reason == "expired"


def test_hostile_samples_are_refused_without_echoing_them(key):
    v = CommandVerifier(key, NAME)
    body = sign_command(key, NAME, "mark_bad", "Cz").split(" ", 2)[2]
    cases = {
        "nested": "[" * 200_000 + "]" * 200_000,
        "nested_in_envelope": f"{PROTOCOL} {'0' * 64} " + '{"a":' + "[" * 1900 + "]" * 1900 + "}",  # < 4 kB, deep
        "nested_body": f"{PROTOCOL} {'0' * 64} " + '{"id":"a","command":"mark_bad","channel":[[["Cz"]]],"time":1}',
        "huge": "x" * (20 * 2**20),
        "just_over": "y" * (MAX_COMMAND_BYTES + 1),
        "not_protocol": body,
        "nan_time": f"{PROTOCOL} {'0' * 64} " + '{"id":"a","command":"mark_bad","channel":"Cz","time":NaN}',
        "extra_key": f"{PROTOCOL} {'0' * 64} " + '{"id":"a","command":"mark_bad","channel":"Cz","time":1,"x":2}',
    }
    for what, text in cases.items():
        r = v.check(text.encode())
        assert isinstance(r, Refusal), what
        assert r.reason in ("malformed", "too_large"), (what, r)
        assert len(json.dumps(r.as_event())) < 700, what
    r = v.check(b"\xff\xfe\x00binary" * 100)
    assert r.reason == "malformed" and "UTF-8" in r.message and len(r.preview) <= PREVIEW_CHARS + 40
    assert v.check(("z" * 10_000).encode()).reason == "too_large"


def test_command_fields_are_checked_after_the_signature(key):
    v = CommandVerifier(key, NAME)
    for command, channel in (("shutdown", "Cz"), ("mark_bad", ""), ("mark_bad", "C" * 65), ("mark_bad", "Cz\n")):
        r = v.check(sign_command(key, NAME, command, channel).encode())
        assert isinstance(r, Refusal) and r.reason == "malformed", (command, channel)


@given(st.text(alphabet='{}[]"\\ab:,', max_size=60))
@settings(max_examples=300, deadline=None)
def test_flat_parser_never_recurses_and_agrees_with_json(text):
    obj = parse_flat_object(text)
    if obj is not None:
        assert json.loads(text) == obj and all(not isinstance(x, (dict, list)) for x in obj.values())
    assert max_depth(text) >= -len(text)  # a linear scan: any text, no exception


def test_max_depth_ignores_brackets_in_strings():
    assert max_depth('{"a": "[[[{{{", "b": "\\"[["}') == 1
    assert max_depth("[" * 100_000) == 100_000


def test_token_bucket():
    b = TokenBucket(rate=2.0, burst=3)
    t = b._last
    assert [b.take(t) for _ in range(4)] == [True, True, True, False]
    assert b.take(t + 0.5) and not b.take(t + 0.5)
    assert not b.full(t + 1.0) and b.full(t + 2.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
