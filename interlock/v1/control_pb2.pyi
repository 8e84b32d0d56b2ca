from interlock.v1 import policy_pb2 as _policy_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("node_id", "last_version", "last_content_hash", "software_version", "listen_address", "usage_sink")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LISTEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    USAGE_SINK_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    last_version: int
    last_content_hash: str
    software_version: str
    listen_address: str
    usage_sink: str
    def __init__(self, node_id: _Optional[str] = ..., last_version: _Optional[int] = ..., last_content_hash: _Optional[str] = ..., software_version: _Optional[str] = ..., listen_address: _Optional[str] = ..., usage_sink: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("version", "content_hash", "accepted", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    content_hash: str
    accepted: bool
    reason: str
    def __init__(self, version: _Optional[int] = ..., content_hash: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("current_version", "server_time_unix_ms")
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    current_version: int
    server_time_unix_ms: int
    def __init__(self, current_version: _Optional[int] = ..., server_time_unix_ms: _Optional[int] = ...) -> None: ...

class ControlMessage(_message.Message):
    __slots__ = ("snapshot", "heartbeat")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot: _policy_pb2.PolicySnapshot
    heartbeat: Heartbeat
    def __init__(self, snapshot: _Optional[_Union[_policy_pb2.PolicySnapshot, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...
