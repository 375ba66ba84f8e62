"""failover/protocol.py: authenticated framing; anything forged, replayed or malformed is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.protocol import (
    MAX_LINE,
    Ack,
    ClientSession,
    Heartbeat,
    HeartbeatReply,
    LineBuffer,
    ProtocolError,
    ServerSession,
    ShutdownYourService,
    StatusReply,
    StatusRequest,
    decode_line,
    parse_message,
)

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"


def pair(secret_client: bytes = SECRET, n: int = 1) -> tuple[ClientSession, ServerSession]:
    server = ServerSession(SECRET, bytes([n]) * 32)
    client = ClientSession(secret_client, bytes([n + 100]) * 32)
    server.receive_hello(client.receive_greeting(server.greeting()))
    return client, server


def test_request_and_reply_round_trip() -> None:
    client, server = pair()
    request = ShutdownYourService(term=3, reason="3 probes failed")
    assert server.receive_request(client.request(request)) == request
    reply = Ack(term=3, ok=True, detail="service verified down")
    assert client.receive_reply(server.reply(reply)) == reply
    # a second exchange on the same connection
    assert server.receive_request(client.request(StatusRequest())) == StatusRequest()
    assert client.receive_reply(server.reply(StatusReply({"state": "ACTIVE"}))) == StatusReply({"state": "ACTIVE"})


def test_forged_request_without_the_secret_is_refused() -> None:
    client, server = pair(secret_client=OTHER)
    with pytest.raises(ProtocolError, match="bad MAC"):
        server.receive_request(client.request(ShutdownYourService(term=1)))


def test_forged_ack_is_refused_by_the_slave() -> None:
    client, _ = pair()
    client.request(ShutdownYourService(term=1))
    _, attacker = pair(n=7)  # an attacker's own session: right secret, another connection
    forged = attacker.reply(Ack(term=1, ok=True))
    with pytest.raises(ProtocolError, match="bad MAC"):
        client.receive_reply(forged)
    line = json.dumps({"seq": 1, "body": Ack(1, True).body(), "mac": "00" * 32}).encode()
    with pytest.raises(ProtocolError, match="bad MAC"):
        client.receive_reply(line)


def test_replay_on_the_same_connection_is_refused() -> None:
    client, server = pair()
    line = client.request(ShutdownYourService(term=1))
    server.receive_request(line)
    with pytest.raises(ProtocolError, match="sequence 1 where 2 was expected"):
        server.receive_request(line)


def test_replay_on_another_connection_is_refused() -> None:
    client, _ = pair(n=1)
    line = client.request(ShutdownYourService(term=1))
    _, other_server = pair(n=2)
    with pytest.raises(ProtocolError, match="bad MAC"):
        other_server.receive_request(line)


def test_reflected_reply_is_not_a_request() -> None:
    client, server = pair()
    server.receive_request(client.request(StatusRequest()))
    reply = server.reply(ShutdownYourService(term=9))  # a reply line sent back to the server
    with pytest.raises(ProtocolError, match="bad MAC"):
        server.receive_request(reply)


def test_altered_body_is_refused() -> None:
    client, server = pair()
    obj = json.loads(client.request(ShutdownYourService(term=1)))
    obj["body"]["term"] = 2
    with pytest.raises(ProtocolError, match="bad MAC"):
        server.receive_request(json.dumps(obj).encode())


def test_truncated_and_oversized_lines_are_refused() -> None:
    client, server = pair()
    line = client.request(ShutdownYourService(term=1))
    with pytest.raises(ProtocolError, match="not a JSON line"):
        server.receive_request(line[: len(line) // 2])
    with pytest.raises(ProtocolError, match="exceeds"):
        LineBuffer().feed(b"x" * (MAX_LINE + 1))
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_line(b"{" + b" " * MAX_LINE + b"}")
    with pytest.raises(ProtocolError, match="exceeds"):
        client.request(StatusReply({"x": "y" * MAX_LINE}))


def test_line_buffer_splits_and_keeps_partial_lines() -> None:
    buffer = LineBuffer()
    assert buffer.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert buffer.feed(b":2}\n") == [b'{"b":2}']


def test_message_before_handshake_and_bad_hello() -> None:
    server = ServerSession(SECRET, b"\x01" * 32)
    with pytest.raises(ProtocolError, match="before the handshake"):
        server.receive_request(b'{"seq":1,"body":{},"mac":""}')
    with pytest.raises(ProtocolError, match="hex digits"):
        server.receive_hello(b'{"hello":"abc","v":1}')
    with pytest.raises(ProtocolError, match="version"):
        server.receive_hello(b'{"hello":"' + b"00" * 32 + b'","v":2}')
    with pytest.raises(ProtocolError, match="echoes"):
        server.receive_hello(b'{"hello":"' + b"01" * 32 + b'","v":1}')


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "must be a JSON object"),
        ({"type": "REBOOT"}, "unknown message type"),
        ({"type": "SHUTDOWN_YOUR_SERVICE", "reason": ""}, "'term' is missing"),
        ({"type": "SHUTDOWN_YOUR_SERVICE", "term": 0, "reason": ""}, "term 0 is out of range"),
        ({"type": "SHUTDOWN_YOUR_SERVICE", "term": "1", "reason": ""}, "wrong type str"),
        ({"type": "SHUTDOWN_YOUR_SERVICE", "term": True, "reason": ""}, "got bool"),
        ({"type": "SHUTDOWN_YOUR_SERVICE", "term": 1, "reason": "", "x": 1}, "unexpected fields"),
        ({"type": "ACK", "term": 1, "ok": 1, "detail": ""}, "wrong type int"),
        ({"type": "HEARTBEAT", "term": 1, "state": "BOSS", "service_ok": True, "detail": ""}, "unknown state"),
        ({"type": "HEARTBEAT_REPLY", "term": 2**64, "state": "ACTIVE"}, "out of range"),
    ],
)
def test_malformed_bodies_are_refused(body: Any, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse_message(body)


def test_every_message_type_survives_its_own_encoding() -> None:
    for message in (
        ShutdownYourService(1, "r"),
        Ack(1, False, "d"),
        Heartbeat(2, "ACTIVE", None, ""),
        Heartbeat(2, "INACTIVE", False, "pid gone"),
        HeartbeatReply(2, "STANDBY"),
        StatusRequest(),
        StatusReply({"a": [1, 2]}),
    ):
        assert parse_message(json.loads(json.dumps(message.body()))) == message


# ---------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["SHUTDOWN_YOUR_SERVICE", "ACK", "HEARTBEAT", "HEARTBEAT_REPLY", "STATUS_REPLY"])},
        optional={
            "term": json_values | st.integers(),
            "ok": json_values,
            "state": st.sampled_from(["ACTIVE", "STANDBY", "x"]) | json_values,
            "reason": json_values,
            "detail": json_values,
            "service_ok": json_values,
            "status": json_values,
        },
    ),
)


@settings(max_examples=500)
@given(bodies)
def test_fuzz_parse_message_only_ever_refuses_with_protocol_error(body: Any) -> None:
    try:
        message = parse_message(body)
    except ProtocolError:
        return
    assert parse_message(message.body()) == message


@settings(max_examples=500)
@given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_fuzz_every_receiving_end_only_ever_refuses(line: bytes) -> None:
    client, server = pair()
    for receive in (server.receive_request, client.receive_reply, ServerSession(SECRET, b"\x02" * 32).receive_hello):
        with pytest.raises(ProtocolError):
            receive(line)
    with pytest.raises(ProtocolError):
        ClientSession(SECRET, b"\x03" * 32).receive_greeting(line)


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=50))
def test_fuzz_line_buffer_reassembles_any_chunking(data: bytes, chunk: int) -> None:
    data = data.replace(b"\n", b"") + b"\n" + data.replace(b"\n", b"x")[:100] + b"\n"
    buffer, lines = LineBuffer(), []
    for i in range(0, len(data), chunk):
        lines += buffer.feed(data[i : i + chunk])
    assert b"\n".join(lines) + b"\n" == data


# ---------------------------------------------------------------------------- review findings (issue 10)


def test_a_mac_that_is_not_ascii_hex_is_refused_not_raised() -> None:
    # A fake server answered one heartbeat with "mac": "\u00e9": compare_digest raised
    # TypeError, which killed lhcd's heartbeat thread for good.
    client, server = pair()
    client.request(Heartbeat(0, "ACTIVE", True, ""))
    for mac in ("\u00e9", "\u00e9" * 64, "A" * 64, "0" * 63, " " * 64, "0" * 65):
        line = json.dumps({"seq": 1, "body": HeartbeatReply(0, "STANDBY").body(), "mac": mac}).encode()
        with pytest.raises(ProtocolError, match="malformed seq or mac"):
            client.receive_reply(line)
        with pytest.raises(ProtocolError, match="malformed seq or mac"):
            server.receive_request(line)


@pytest.mark.parametrize("version", ["true", "1.0", '"1"', "null", "2"])
def test_only_the_integer_version_is_accepted(version: str) -> None:
    server = ServerSession(SECRET, b"\x01" * 32)
    with pytest.raises(ProtocolError, match="version"):
        server.receive_hello(b'{"hello":"' + b"00" * 32 + b'","v":' + version.encode() + b"}")
    with pytest.raises(ProtocolError, match="version"):
        ClientSession(SECRET, b"\x03" * 32).receive_greeting(
            b'{"challenge":"' + b"00" * 32 + b'","v":' + version.encode() + b"}"
        )


def test_a_nonce_with_spaces_is_refused() -> None:
    # bytes.fromhex skips spaces: "00 00 ..." of the right length would have passed
    server = ServerSession(SECRET, b"\x01" * 32)
    with pytest.raises(ProtocolError, match="hex digits"):
        server.receive_hello(b'{"hello":"' + (b"0 " * 32) + b'","v":1}')


def test_terms_have_a_ceiling_far_below_2_63() -> None:
    from failover.machine.model import MAX_TERM

    assert MAX_TERM < 2**32
    assert parse_message(HeartbeatReply(MAX_TERM, "ACTIVE").body()) == HeartbeatReply(MAX_TERM, "ACTIVE")
    for body in (
        {"type": "HEARTBEAT_REPLY", "term": MAX_TERM + 1, "state": "ACTIVE"},
        {"type": "SHUTDOWN_YOUR_SERVICE", "term": 2**63 - 1, "reason": ""},
        {"type": "OPERATOR", "action": "switchback-start", "by": "x", "peer_term": MAX_TERM + 1},
    ):
        with pytest.raises(ProtocolError, match="MAX_TERM"):
            parse_message(body)


def test_line_buffer_does_not_copy_a_trickled_line_per_chunk() -> None:
    buffer = LineBuffer()
    for _ in range(MAX_LINE // 2):
        assert buffer.feed(b"x") == []
    assert buffer._size == MAX_LINE // 2 and len(buffer._parts) == MAX_LINE // 2  # kept, not joined
    assert buffer.feed(b"\n") == [b"x" * (MAX_LINE // 2)]
    with pytest.raises(ProtocolError, match="limit"):
        for _ in range(MAX_LINE + 1):
            buffer.feed(b"y")


frames = st.fixed_dictionaries(
    {
        "seq": st.integers() | json_values,
        "body": st.dictionaries(st.text(max_size=10), json_values, max_size=4) | json_values,
        "mac": st.text(max_size=70) | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | json_values,
    }
)


@settings(max_examples=500)
@given(frames)
def test_fuzz_any_frame_with_any_mac_is_refused_with_protocol_error(frame: dict[str, Any]) -> None:
    client, server = pair()
    client.request(StatusRequest())
    line = json.dumps(frame).encode()  # ensure_ascii: a non-ASCII mac arrives as \\u escapes
    with pytest.raises(ProtocolError):
        client.receive_reply(line)
    with pytest.raises(ProtocolError):
        server.receive_request(line)
