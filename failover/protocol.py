"""The control protocol between the agents, sans I/O: framing, authentication, messages.

Newline-delimited JSON, one message per line, at most MAX_LINE bytes. A connection starts with
the server's random challenge and the client's random hello; both nonces and the shared secret
give the connection its own key. Every later line is `{"seq": n, "body": {...}, "mac": hex}`
with an HMAC-SHA256 over the direction, the sequence number and the canonical body. So a forged
message (no secret), a replayed one (another connection's key, or a used sequence number), a
reflected one (the other direction) or an altered one is refused with ProtocolError, and never
reaches the state machine. Nothing here reads a socket or a clock: callers pass bytes and nonces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from failover.errors import FailoverError
from failover.machine.model import MAX_TERM

VERSION = 1
MAX_LINE = 64 * 1024
NONCE_BYTES = 32


class ProtocolError(FailoverError):
    """A line or message that must be refused; the message says why (for the log)."""


# --------------------------------------------------------------------------------------------
# Messages. Each validates itself; `from_body` refuses anything malformed.


def _expect(body: dict[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    if name not in body:
        if optional:
            return None
        raise ProtocolError(f"field {name!r} is missing")
    value = body[name]
    if optional and value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"field {name!r} must be {kind}, got bool")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} has the wrong type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"field {name!r} is not a finite number")
    return value


def _term(body: dict[str, Any], minimum: int = 0, name: str = "term") -> int:
    term: int = _expect(body, name, int)
    if not minimum <= term <= MAX_TERM:
        shown = str(term) if abs(term) < 10**30 else f"of {len(str(term))} digits"
        raise ProtocolError(f"{name} {shown} is out of range {minimum}..{MAX_TERM} (MAX_TERM)")
    return term


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""

    def body(self) -> dict[str, Any]:
        return {"type": self.TYPE, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        raise NotImplementedError


@dataclass(frozen=True)
class ShutdownYourService(Message):
    """Slave -> master: stop your service for this term and answer with an Ack."""

    TYPE: ClassVar[str] = "SHUTDOWN_YOUR_SERVICE"
    term: int
    reason: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_term(body, minimum=1), _expect(body, "reason", str))


@dataclass(frozen=True)
class Ack(Message):
    """Master -> slave: ok=True means the service is verified down for this term."""

    TYPE: ClassVar[str] = "ACK"
    term: int
    ok: bool
    detail: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_term(body), _expect(body, "ok", bool), _expect(body, "detail", str))


@dataclass(frozen=True)
class Heartbeat(Message):
    """Master -> slave: the master's state and its own view of its service."""

    TYPE: ClassVar[str] = "HEARTBEAT"
    term: int
    state: str
    service_ok: bool | None
    detail: str = ""
    condition: str = "unknown"  # failover.machine.model.Condition: up, restarting, failed, stopped, ...

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        from failover.machine.model import Condition

        condition = _expect(body, "condition", str, optional=True) or "unknown"
        if condition not in {c.value for c in Condition}:
            raise ProtocolError(f"unknown condition {condition[:40]!r}")
        return cls(
            _term(body),
            _state(body),
            _expect(body, "service_ok", bool, optional=True),
            _expect(body, "detail", str),
            condition,
        )


@dataclass(frozen=True)
class HeartbeatReply(Message):
    """Slave -> master: the slave's term and state (a higher term deposes an ACTIVE master), and
    whether rhcd itself answered (False: socketserver2 answered from the state file because rhcd
    does not run, so nothing watches the master and nothing would fail over)."""

    TYPE: ClassVar[str] = "HEARTBEAT_REPLY"
    term: int
    state: str
    watching: bool = True

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        watching = _expect(body, "watching", bool, optional=True)
        return cls(_term(body), _state(body), True if watching is None else watching)


@dataclass(frozen=True)
class StatusRequest(Message):
    TYPE: ClassVar[str] = "STATUS"

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls()


@dataclass(frozen=True)
class StatusReply(Message):
    TYPE: ClassVar[str] = "STATUS_REPLY"
    status: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_expect(body, "status", dict))


@dataclass(frozen=True)
class JournalRequest(Message):
    """`failover history` -> either host: the newest `limit` entries of its journal."""

    TYPE: ClassVar[str] = "JOURNAL"
    MAX: ClassVar[int] = 1000  # the most one asks for (and the reply must fit in MAX_LINE)
    limit: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        limit: int = _expect(body, "limit", int)
        if not 1 <= limit <= cls.MAX:
            raise ProtocolError(f"limit {str(limit)[:20]} is out of range 1..{cls.MAX}")
        return cls(limit)


@dataclass(frozen=True)
class JournalReply(Message):
    """Those entries, oldest first (history.py checks each); `omitted`: what the byte cap left out."""

    TYPE: ClassVar[str] = "JOURNAL_REPLY"
    version: int
    entries: list[Any]
    omitted: int = 0

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_term(body, name="version"), _expect(body, "entries", list), _term(body, name="omitted"))


@dataclass(frozen=True)
class Refused(Message):
    """An authenticated request this host will not act on (unknown type, wrong host role)."""

    TYPE: ClassVar[str] = "REFUSED"
    reason: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_expect(body, "reason", str))


OPERATOR_ACTIONS = ("hold", "release", "switchover", "switchback-stop", "switchback-start")


@dataclass(frozen=True)
class OperatorCommand(Message):
    """The `failover` command -> either host: hold, release, switchover, a switchback step."""

    TYPE: ClassVar[str] = "OPERATOR"
    action: str
    by: str
    reason: str = ""
    since: str = ""
    peer_term: int = 0  # switchback-start: what the slave reported
    peer_state: str = "MAINTENANCE"
    peer_service_down: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        action = _expect(body, "action", str)
        if action not in OPERATOR_ACTIONS:
            raise ProtocolError(f"unknown operator action {action[:40]!r}")
        by, reason, since = (
            (_expect(body, name, str, optional=True) or "")[:1000] for name in ("by", "reason", "since")
        )
        peer_term = _term(body, name="peer_term") if body.get("peer_term") is not None else 0
        peer_state = _state({"state": body.get("peer_state", "MAINTENANCE")})
        down = bool(_expect(body, "peer_service_down", bool, optional=True))
        return cls(action, by, reason, since, peer_term, peer_state, down)


@dataclass(frozen=True)
class OperatorAnswer(Message):
    TYPE: ClassVar[str] = "OPERATOR_ANSWER"
    ok: bool
    message: str
    state: str
    term: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_expect(body, "ok", bool), _expect(body, "message", str), _state(body), _term(body))


@dataclass(frozen=True)
class ConfirmFenced(Message):
    """`failover confirm-fenced` -> rhcd, over the local socket only (socketserver2 refuses it):
    the operator made sure the master serves no one in `term` (None: the slave's current term)."""

    TYPE: ClassVar[str] = "CONFIRM_FENCED"
    term: int | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Message:
        return cls(_term(body) if body.get("term") is not None else None)


def _state(body: dict[str, Any]) -> str:
    from failover.machine import State  # the protocol carries the machine's state names

    state: str = _expect(body, "state", str)
    if state not in State.__members__:
        raise ProtocolError(f"unknown state {state[:40]!r}")
    return state


MESSAGE_TYPES: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (
        ShutdownYourService,
        Ack,
        Heartbeat,
        HeartbeatReply,
        StatusRequest,
        StatusReply,
        JournalRequest,
        JournalReply,
        Refused,
        OperatorCommand,
        OperatorAnswer,
        ConfirmFenced,
    )
}


def parse_message(body: Any) -> Message:
    if not isinstance(body, dict):
        raise ProtocolError("the body must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    cls = MESSAGE_TYPES[kind]
    extra = set(body) - {"type"} - {f.name for f in fields(cls)}
    if extra:
        raise ProtocolError(f"unexpected fields {sorted(extra)[:5]} in {kind}")
    return cls.from_body(body)


# --------------------------------------------------------------------------------------------
# The local RPC: the same messages as JSON objects over a Unix socket between the daemons of one
# host (socketserver -> lhcd, socketserver2 -> rhcd, the CLI -> rhcd). The socket's mode is the
# authentication, so there is no MAC; a request may name the network `peer` it came from.

LOCAL_REQUESTS: dict[str, tuple[type[Message], ...]] = {
    "lhcd": (ShutdownYourService, OperatorCommand),
    "rhcd": (Heartbeat, OperatorCommand, ConfirmFenced),
}
LOCAL_ANSWERS: dict[type[Message], type[Message]] = {
    ShutdownYourService: Ack,
    Heartbeat: HeartbeatReply,
    OperatorCommand: OperatorAnswer,
    ConfirmFenced: OperatorAnswer,
}


def local_request(message: Message, peer: str = "") -> dict[str, Any]:
    """The JSON object that carries `message` to a local daemon."""
    return {**message.body(), "peer": peer}


def parse_local_request(obj: Any, daemon: str) -> tuple[Message, str]:
    """The message and the peer of a local request that `daemon` serves; ProtocolError else."""
    if not isinstance(obj, dict):
        raise ProtocolError("a local request must be a JSON object")
    body = dict(obj)
    peer = body.pop("peer", "")
    if not isinstance(peer, str):
        raise ProtocolError("field 'peer' must be text")
    message = parse_message(body)
    if not isinstance(message, LOCAL_REQUESTS[daemon]):
        raise ProtocolError(f"{daemon} does not serve {message.TYPE}")
    return message, peer[:200]


def parse_local_answer(obj: Any, request: Message) -> Message:
    """A local daemon's answer to `request`: the answer type it calls for, or Refused."""
    message = parse_message(obj)
    if not isinstance(message, LOCAL_ANSWERS[type(request)] | Refused):
        raise ProtocolError(f"{message.TYPE} does not answer {request.TYPE}")
    return message


# --------------------------------------------------------------------------------------------
# Framing


def encode_line(obj: dict[str, Any]) -> bytes:
    line = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds the {MAX_LINE}-byte limit")
    return line


def decode_line(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes exceeds the {MAX_LINE}-byte limit")
    try:
        obj = json.loads(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"not a JSON line: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a line must be a JSON object")
    return obj


class LineBuffer:
    """Collects received bytes and returns complete lines; refuses a line over MAX_LINE.

    A partial line is kept as a list of chunks and joined only once its newline arrives, so a
    peer that trickles a long line costs one copy of it, not one copy per chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._parts.append(data)
            self._size += len(data)
            if self._size > MAX_LINE:
                raise ProtocolError(f"line exceeds the {MAX_LINE}-byte limit")
            return []
        *lines, rest = b"".join([*self._parts, data]).split(b"\n")
        self._parts, self._size = [rest], len(rest)
        if len(rest) > MAX_LINE or any(len(line) > MAX_LINE for line in lines):
            raise ProtocolError(f"line exceeds the {MAX_LINE}-byte limit")
        return lines


# --------------------------------------------------------------------------------------------
# Authenticated sessions

_C2S, _S2C = b"client->server", b"server->client"
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
_HEX_NONCE = re.compile(f"[0-9a-fA-F]{{{2 * NONCE_BYTES}}}")


def _nonce(obj: dict[str, Any], field: str) -> bytes:
    value = obj.get(field)
    version = obj.get("v")
    if type(version) is not int or version != VERSION:  # not `!=` alone: True == 1.0 == 1
        raise ProtocolError(f"unsupported protocol version {str(version)[:20]!r}")
    if not isinstance(value, str) or not _HEX_NONCE.fullmatch(value):
        raise ProtocolError(f"{field} must be {2 * NONCE_BYTES} hex digits")
    return bytes.fromhex(value)


def _mac(key: bytes, direction: bytes, seq: int, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()
    return hmac.new(key, direction + b"|" + str(seq).encode() + b"|" + canonical, hashlib.sha256).hexdigest()


class _Session:
    def __init__(self, secret: bytes, nonce: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the shared secret must have at least 16 bytes")
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce has {NONCE_BYTES} bytes")
        self._secret, self.nonce = secret, nonce
        self._key: bytes | None = None

    def _derive(self, server_nonce: bytes, client_nonce: bytes) -> None:
        material = b"failover-v1|" + server_nonce + b"|" + client_nonce
        self._key = hmac.new(self._secret, material, hashlib.sha256).digest()

    def _seal(self, direction: bytes, seq: int, message: Message) -> bytes:
        assert self._key is not None, "handshake not done"
        body = message.body()
        return encode_line({"seq": seq, "body": body, "mac": _mac(self._key, direction, seq, body)})

    def _open(self, direction: bytes, expected_seq: int, line: bytes) -> Message:
        if self._key is None:
            raise ProtocolError("message before the handshake")
        obj = decode_line(line)
        if set(obj) != {"seq", "body", "mac"}:
            raise ProtocolError("a message has exactly the fields seq, body, mac")
        seq, body, mac = obj["seq"], obj["body"], obj["mac"]
        if not isinstance(mac, str) or not _HEX_MAC.fullmatch(mac) or type(seq) is not int:
            raise ProtocolError("malformed seq or mac")
        if not isinstance(body, dict):
            raise ProtocolError("the body must be a JSON object")
        # Both sides are ASCII hex now: compare_digest raises TypeError on any other str.
        if not hmac.compare_digest(mac.encode(), _mac(self._key, direction, seq, body).encode()):
            raise ProtocolError("bad MAC: forged, altered, or signed with another secret or connection")
        if seq != expected_seq:
            raise ProtocolError(f"sequence {seq} where {expected_seq} was expected: replayed or reordered")
        return parse_message(body)


class ServerSession(_Session):
    """The accepting side: greeting() first, then hello, then requests and replies in turn."""

    def __init__(self, secret: bytes, nonce: bytes) -> None:
        super().__init__(secret, nonce)
        self._seq = 0

    def greeting(self) -> bytes:
        return encode_line({"challenge": self.nonce.hex(), "v": VERSION})

    def receive_hello(self, line: bytes) -> None:
        obj = decode_line(line)
        client_nonce = _nonce(obj, "hello")
        if client_nonce == self.nonce:
            raise ProtocolError("the hello echoes the challenge")
        self._derive(self.nonce, client_nonce)

    def receive_request(self, line: bytes) -> Message:
        message = self._open(_C2S, self._seq + 1, line)
        self._seq += 1
        return message

    def reply(self, message: Message) -> bytes:
        return self._seal(_S2C, self._seq, message)


class ClientSession(_Session):
    """The connecting side: receive_greeting() answers with the hello, then request/reply."""

    def __init__(self, secret: bytes, nonce: bytes) -> None:
        super().__init__(secret, nonce)
        self._seq = 0

    def receive_greeting(self, line: bytes) -> bytes:
        server_nonce = _nonce(decode_line(line), "challenge")
        self._derive(server_nonce, self.nonce)
        return encode_line({"hello": self.nonce.hex(), "v": VERSION})

    def request(self, message: Message) -> bytes:
        self._seq += 1
        return self._seal(_C2S, self._seq, message)

    def receive_reply(self, line: bytes) -> Message:
        return self._open(_S2C, self._seq, line)
