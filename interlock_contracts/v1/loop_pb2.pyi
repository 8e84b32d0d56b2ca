from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LoopTrip(_message.Message):
    __slots__ = ("node_id", "key_id", "breaker_id", "action", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BREAKER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    key_id: str
    breaker_id: str
    action: str
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., key_id: _Optional[str] = ..., breaker_id: _Optional[str] = ..., action: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LoopTripAck(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    def __init__(self, applied: _Optional[bool] = ...) -> None: ...

class NodeEvent(_message.Message):
    __slots__ = ("node_id", "kind", "subject", "detail", "episode", "severity")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kind: str
    subject: str
    detail: str
    episode: int
    severity: str
    def __init__(self, node_id: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ..., episode: _Optional[int] = ..., severity: _Optional[str] = ...) -> None: ...

class NodeEventAck(_message.Message):
    __slots__ = ("fired",)
    FIRED_FIELD_NUMBER: _ClassVar[int]
    fired: bool
    def __init__(self, fired: _Optional[bool] = ...) -> None: ...
