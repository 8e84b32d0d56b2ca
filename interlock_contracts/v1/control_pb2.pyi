from interlock_contracts.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("node_id", "last_version", "last_content_hash", "software_version", "listen_address", "usage_sink", "accepts_deltas")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LISTEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    USAGE_SINK_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_DELTAS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    last_version: int
    last_content_hash: str
    software_version: str
    listen_address: str
    usage_sink: str
    accepts_deltas: bool
    def __init__(self, node_id: _Optional[str] = ..., last_version: _Optional[int] = ..., last_content_hash: _Optional[str] = ..., software_version: _Optional[str] = ..., listen_address: _Optional[str] = ..., usage_sink: _Optional[str] = ..., accepts_deltas: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("snapshot", "heartbeat", "delta")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    snapshot: _policy_pb2.PolicySnapshot
    heartbeat: Heartbeat
    delta: PolicyDelta
    def __init__(self, snapshot: _Optional[_Union[_policy_pb2.PolicySnapshot, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., delta: _Optional[_Union[PolicyDelta, _Mapping]] = ...) -> None: ...

class PolicyDelta(_message.Message):
    __slots__ = ("base_version", "version", "content_hash", "created_unix_ms", "upsert_keys", "removed_keys", "upsert_budgets", "removed_budgets", "upsert_rate_limits", "removed_rate_limits", "sections", "replaced_sections")
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_KEYS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_KEYS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_BUDGETS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BUDGETS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_SECTIONS_FIELD_NUMBER: _ClassVar[int]
    base_version: int
    version: int
    content_hash: str
    created_unix_ms: int
    upsert_keys: _containers.RepeatedCompositeFieldContainer[_policy_pb2.VirtualKey]
    removed_keys: _containers.RepeatedScalarFieldContainer[str]
    upsert_budgets: _containers.RepeatedCompositeFieldContainer[_policy_pb2.Budget]
    removed_budgets: _containers.RepeatedScalarFieldContainer[str]
    upsert_rate_limits: _containers.RepeatedCompositeFieldContainer[_policy_pb2.RateLimit]
    removed_rate_limits: _containers.RepeatedScalarFieldContainer[str]
    sections: _policy_pb2.PolicySnapshot
    replaced_sections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, base_version: _Optional[int] = ..., version: _Optional[int] = ..., content_hash: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., upsert_keys: _Optional[_Iterable[_Union[_policy_pb2.VirtualKey, _Mapping]]] = ..., removed_keys: _Optional[_Iterable[str]] = ..., upsert_budgets: _Optional[_Iterable[_Union[_policy_pb2.Budget, _Mapping]]] = ..., removed_budgets: _Optional[_Iterable[str]] = ..., upsert_rate_limits: _Optional[_Iterable[_Union[_policy_pb2.RateLimit, _Mapping]]] = ..., removed_rate_limits: _Optional[_Iterable[str]] = ..., sections: _Optional[_Union[_policy_pb2.PolicySnapshot, _Mapping]] = ..., replaced_sections: _Optional[_Iterable[str]] = ...) -> None: ...
