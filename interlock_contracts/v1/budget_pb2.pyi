from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_KIND_UNSPECIFIED: _ClassVar[LeaseKind]
    LEASE_KIND_BUDGET: _ClassVar[LeaseKind]
    LEASE_KIND_REQUESTS: _ClassVar[LeaseKind]
    LEASE_KIND_TOKENS: _ClassVar[LeaseKind]
    LEASE_KIND_CONCURRENCY: _ClassVar[LeaseKind]

class LeaseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_STATUS_OK: _ClassVar[LeaseStatus]
    LEASE_STATUS_UNKNOWN_LIMIT: _ClassVar[LeaseStatus]
    LEASE_STATUS_WINDOW_CLOSED: _ClassVar[LeaseStatus]
    LEASE_STATUS_INVALID: _ClassVar[LeaseStatus]
LEASE_KIND_UNSPECIFIED: LeaseKind
LEASE_KIND_BUDGET: LeaseKind
LEASE_KIND_REQUESTS: LeaseKind
LEASE_KIND_TOKENS: LeaseKind
LEASE_KIND_CONCURRENCY: LeaseKind
LEASE_STATUS_OK: LeaseStatus
LEASE_STATUS_UNKNOWN_LIMIT: LeaseStatus
LEASE_STATUS_WINDOW_CLOSED: LeaseStatus
LEASE_STATUS_INVALID: LeaseStatus

class LeaseOp(_message.Message):
    __slots__ = ("kind", "limit_id", "window_key", "settled_delta", "overshoot_delta", "want_total", "min_grant", "reserved", "settled_total", "overshoot_total")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_KEY_FIELD_NUMBER: _ClassVar[int]
    SETTLED_DELTA_FIELD_NUMBER: _ClassVar[int]
    OVERSHOOT_DELTA_FIELD_NUMBER: _ClassVar[int]
    WANT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MIN_GRANT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    SETTLED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OVERSHOOT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    kind: LeaseKind
    limit_id: str
    window_key: str
    settled_delta: int
    overshoot_delta: int
    want_total: int
    min_grant: int
    reserved: int
    settled_total: int
    overshoot_total: int
    def __init__(self, kind: _Optional[_Union[LeaseKind, str]] = ..., limit_id: _Optional[str] = ..., window_key: _Optional[str] = ..., settled_delta: _Optional[int] = ..., overshoot_delta: _Optional[int] = ..., want_total: _Optional[int] = ..., min_grant: _Optional[int] = ..., reserved: _Optional[int] = ..., settled_total: _Optional[int] = ..., overshoot_total: _Optional[int] = ...) -> None: ...

class LeaseSyncRequest(_message.Message):
    __slots__ = ("node_id", "ops", "seq", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ops: _containers.RepeatedCompositeFieldContainer[LeaseOp]
    seq: int
    incarnation: int
    def __init__(self, node_id: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[LeaseOp, _Mapping]]] = ..., seq: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class LeaseGrant(_message.Message):
    __slots__ = ("kind", "limit_id", "window_key", "status", "error", "lease", "granted_delta", "lease_expires_unix_ms", "limit", "settled", "leased", "remaining", "window_resets_unix_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_DELTA_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    WINDOW_RESETS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    kind: LeaseKind
    limit_id: str
    window_key: str
    status: LeaseStatus
    error: str
    lease: int
    granted_delta: int
    lease_expires_unix_ms: int
    limit: int
    settled: int
    leased: int
    remaining: int
    window_resets_unix_ms: int
    def __init__(self, kind: _Optional[_Union[LeaseKind, str]] = ..., limit_id: _Optional[str] = ..., window_key: _Optional[str] = ..., status: _Optional[_Union[LeaseStatus, str]] = ..., error: _Optional[str] = ..., lease: _Optional[int] = ..., granted_delta: _Optional[int] = ..., lease_expires_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ..., settled: _Optional[int] = ..., leased: _Optional[int] = ..., remaining: _Optional[int] = ..., window_resets_unix_ms: _Optional[int] = ...) -> None: ...

class LeaseSyncResponse(_message.Message):
    __slots__ = ("grants", "server_time_unix_ms", "lease_ttl_ms")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[LeaseGrant]
    server_time_unix_ms: int
    lease_ttl_ms: int
    def __init__(self, grants: _Optional[_Iterable[_Union[LeaseGrant, _Mapping]]] = ..., server_time_unix_ms: _Optional[int] = ..., lease_ttl_ms: _Optional[int] = ...) -> None: ...
