from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attempt(_message.Message):
    __slots__ = ("provider", "deployment", "upstream_model", "status", "error_class", "latency_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    deployment: str
    upstream_model: str
    status: int
    error_class: str
    latency_ms: int
    def __init__(self, provider: _Optional[str] = ..., deployment: _Optional[str] = ..., upstream_model: _Optional[str] = ..., status: _Optional[int] = ..., error_class: _Optional[str] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class UsageEvent(_message.Message):
    __slots__ = ("event_id", "received_unix_us", "first_byte_unix_us", "done_unix_us", "node_id", "key_id", "team_id", "user_id", "project_id", "tags", "dialect", "endpoint", "requested_model", "alias", "provider", "upstream_model", "model", "route_rule", "attempts", "fallback", "status", "error_class", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "usage_estimated", "cost_usd", "price_version", "latency_ms", "ttfb_ms", "stream", "client_disconnected", "policy_version", "guardrail_outcome", "request_bytes", "response_bytes", "cache_write_5m_tokens", "cache_write_1h_tokens", "audio_input_tokens", "audio_output_tokens", "counted_tokens", "count_estimated")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    FIRST_BYTE_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    DONE_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_RULE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    USAGE_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COUNTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COUNT_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_unix_us: int
    first_byte_unix_us: int
    done_unix_us: int
    node_id: str
    key_id: str
    team_id: str
    user_id: str
    project_id: str
    tags: _containers.ScalarMap[str, str]
    dialect: str
    endpoint: str
    requested_model: str
    alias: str
    provider: str
    upstream_model: str
    model: str
    route_rule: str
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    fallback: bool
    status: int
    error_class: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    usage_estimated: bool
    cost_usd: str
    price_version: str
    latency_ms: int
    ttfb_ms: int
    stream: bool
    client_disconnected: bool
    policy_version: int
    guardrail_outcome: str
    request_bytes: int
    response_bytes: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    audio_input_tokens: int
    audio_output_tokens: int
    counted_tokens: int
    count_estimated: bool
    def __init__(self, event_id: _Optional[str] = ..., received_unix_us: _Optional[int] = ..., first_byte_unix_us: _Optional[int] = ..., done_unix_us: _Optional[int] = ..., node_id: _Optional[str] = ..., key_id: _Optional[str] = ..., team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., project_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., dialect: _Optional[str] = ..., endpoint: _Optional[str] = ..., requested_model: _Optional[str] = ..., alias: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., model: _Optional[str] = ..., route_rule: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., fallback: _Optional[bool] = ..., status: _Optional[int] = ..., error_class: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., usage_estimated: _Optional[bool] = ..., cost_usd: _Optional[str] = ..., price_version: _Optional[str] = ..., latency_ms: _Optional[int] = ..., ttfb_ms: _Optional[int] = ..., stream: _Optional[bool] = ..., client_disconnected: _Optional[bool] = ..., policy_version: _Optional[int] = ..., guardrail_outcome: _Optional[str] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., cache_write_5m_tokens: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ..., audio_input_tokens: _Optional[int] = ..., audio_output_tokens: _Optional[int] = ..., counted_tokens: _Optional[int] = ..., count_estimated: _Optional[bool] = ...) -> None: ...
