from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Price(_message.Message):
    __slots__ = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "version", "cache_write_per_mtok", "cache_write_1h_per_mtok", "audio_input_per_mtok", "audio_output_per_mtok", "above_input_tokens", "above", "source", "source_url", "source_date")
    INPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    AUDIO_INPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OUTPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    ABOVE_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ABOVE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DATE_FIELD_NUMBER: _ClassVar[int]
    input_per_mtok: str
    output_per_mtok: str
    cached_input_per_mtok: str
    version: str
    cache_write_per_mtok: str
    cache_write_1h_per_mtok: str
    audio_input_per_mtok: str
    audio_output_per_mtok: str
    above_input_tokens: int
    above: Price
    source: str
    source_url: str
    source_date: str
    def __init__(self, input_per_mtok: _Optional[str] = ..., output_per_mtok: _Optional[str] = ..., cached_input_per_mtok: _Optional[str] = ..., version: _Optional[str] = ..., cache_write_per_mtok: _Optional[str] = ..., cache_write_1h_per_mtok: _Optional[str] = ..., audio_input_per_mtok: _Optional[str] = ..., audio_output_per_mtok: _Optional[str] = ..., above_input_tokens: _Optional[int] = ..., above: _Optional[_Union[Price, _Mapping]] = ..., source: _Optional[str] = ..., source_url: _Optional[str] = ..., source_date: _Optional[str] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "kind", "base_url", "credential_ref", "headers", "timeout_ms", "options", "region")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_REF_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    base_url: str
    credential_ref: str
    headers: _containers.ScalarMap[str, str]
    timeout_ms: int
    options: _containers.ScalarMap[str, str]
    region: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., base_url: _Optional[str] = ..., credential_ref: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., timeout_ms: _Optional[int] = ..., options: _Optional[_Mapping[str, str]] = ..., region: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "provider", "upstream_name", "price", "max_output_tokens", "context_window", "deployments", "circuit", "fallback")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    upstream_name: str
    price: Price
    max_output_tokens: int
    context_window: int
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    circuit: CircuitBreaker
    fallback: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_name: _Optional[str] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., max_output_tokens: _Optional[int] = ..., context_window: _Optional[int] = ..., deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., circuit: _Optional[_Union[CircuitBreaker, _Mapping]] = ..., fallback: _Optional[_Iterable[str]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "provider", "upstream_name", "weight", "region")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    upstream_name: str
    weight: int
    region: str
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_name: _Optional[str] = ..., weight: _Optional[int] = ..., region: _Optional[str] = ...) -> None: ...

class CircuitBreaker(_message.Message):
    __slots__ = ("enabled", "failures", "failure_rate", "min_requests", "window_ms", "cooldown_ms")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_MS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    failures: int
    failure_rate: float
    min_requests: int
    window_ms: int
    cooldown_ms: int
    def __init__(self, enabled: _Optional[bool] = ..., failures: _Optional[int] = ..., failure_rate: _Optional[float] = ..., min_requests: _Optional[int] = ..., window_ms: _Optional[int] = ..., cooldown_ms: _Optional[int] = ...) -> None: ...

class RuleMatch(_message.Message):
    __slots__ = ("keys", "teams", "projects", "models", "headers", "tags", "has_tools", "min_input_tokens", "max_input_tokens")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    HAS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    MIN_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    teams: _containers.RepeatedScalarFieldContainer[str]
    projects: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    headers: _containers.ScalarMap[str, str]
    tags: _containers.ScalarMap[str, str]
    has_tools: bool
    min_input_tokens: int
    max_input_tokens: int
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., teams: _Optional[_Iterable[str]] = ..., projects: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., has_tools: _Optional[bool] = ..., min_input_tokens: _Optional[int] = ..., max_input_tokens: _Optional[int] = ...) -> None: ...

class RoutingRule(_message.Message):
    __slots__ = ("id", "priority", "match", "target", "deployments", "fallback", "fallback_on", "retries", "backoff_ms", "max_backoff_ms", "max_retry_after_ms", "attempt_timeout_ms", "total_timeout_ms", "sticky")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ON_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    STICKY_FIELD_NUMBER: _ClassVar[int]
    id: str
    priority: int
    match: RuleMatch
    target: str
    deployments: _containers.RepeatedScalarFieldContainer[str]
    fallback: _containers.RepeatedScalarFieldContainer[str]
    fallback_on: _containers.RepeatedScalarFieldContainer[str]
    retries: int
    backoff_ms: int
    max_backoff_ms: int
    max_retry_after_ms: int
    attempt_timeout_ms: int
    total_timeout_ms: int
    sticky: bool
    def __init__(self, id: _Optional[str] = ..., priority: _Optional[int] = ..., match: _Optional[_Union[RuleMatch, _Mapping]] = ..., target: _Optional[str] = ..., deployments: _Optional[_Iterable[str]] = ..., fallback: _Optional[_Iterable[str]] = ..., fallback_on: _Optional[_Iterable[str]] = ..., retries: _Optional[int] = ..., backoff_ms: _Optional[int] = ..., max_backoff_ms: _Optional[int] = ..., max_retry_after_ms: _Optional[int] = ..., attempt_timeout_ms: _Optional[int] = ..., total_timeout_ms: _Optional[int] = ..., sticky: _Optional[bool] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("name", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class Team(_message.Message):
    __slots__ = ("id", "name", "allowed_models", "default_tags", "required_tags", "allowed_regions", "allowed_providers", "overridable_tags")
    class DefaultTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_TAGS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDABLE_TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    default_tags: _containers.ScalarMap[str, str]
    required_tags: _containers.RepeatedScalarFieldContainer[str]
    allowed_regions: _containers.RepeatedScalarFieldContainer[str]
    allowed_providers: _containers.RepeatedScalarFieldContainer[str]
    overridable_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., default_tags: _Optional[_Mapping[str, str]] = ..., required_tags: _Optional[_Iterable[str]] = ..., allowed_regions: _Optional[_Iterable[str]] = ..., allowed_providers: _Optional[_Iterable[str]] = ..., overridable_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "team_id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    team_id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., team_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("id", "team_id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    team_id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., team_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class VirtualKey(_message.Message):
    __slots__ = ("id", "key_hash", "name", "team_id", "user_id", "project_id", "allowed_models", "expires_at_unix_ms", "revoked", "default_tags", "parent_key_id", "paused", "paused_reason")
    class DefaultTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TAGS_FIELD_NUMBER: _ClassVar[int]
    PARENT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    key_hash: bytes
    name: str
    team_id: str
    user_id: str
    project_id: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    expires_at_unix_ms: int
    revoked: bool
    default_tags: _containers.ScalarMap[str, str]
    parent_key_id: str
    paused: bool
    paused_reason: str
    def __init__(self, id: _Optional[str] = ..., key_hash: _Optional[bytes] = ..., name: _Optional[str] = ..., team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., project_id: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., expires_at_unix_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., default_tags: _Optional[_Mapping[str, str]] = ..., parent_key_id: _Optional[str] = ..., paused: _Optional[bool] = ..., paused_reason: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("id", "scope", "scope_id", "window", "limit_pico", "timezone", "offline_mode", "optimistic_overshoot_pico", "limit_usd", "max_staleness_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PICO_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MODE_FIELD_NUMBER: _ClassVar[int]
    OPTIMISTIC_OVERSHOOT_PICO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: str
    scope_id: str
    window: str
    limit_pico: int
    timezone: str
    offline_mode: str
    optimistic_overshoot_pico: int
    limit_usd: str
    max_staleness_ms: int
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[str] = ..., scope_id: _Optional[str] = ..., window: _Optional[str] = ..., limit_pico: _Optional[int] = ..., timezone: _Optional[str] = ..., offline_mode: _Optional[str] = ..., optimistic_overshoot_pico: _Optional[int] = ..., limit_usd: _Optional[str] = ..., max_staleness_ms: _Optional[int] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("id", "scope", "scope_id", "models", "requests_per_minute", "tokens_per_minute", "max_concurrent", "offline_mode")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: str
    scope_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    offline_mode: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[str] = ..., scope_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., max_concurrent: _Optional[int] = ..., offline_mode: _Optional[str] = ...) -> None: ...

class BudgetPolicy(_message.Message):
    __slots__ = ("budgets", "rate_limits", "unpriced_price", "unpriced_models", "default_max_output_tokens")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    rate_limits: _containers.RepeatedCompositeFieldContainer[RateLimit]
    unpriced_price: Price
    unpriced_models: _containers.RepeatedScalarFieldContainer[str]
    default_max_output_tokens: int
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., rate_limits: _Optional[_Iterable[_Union[RateLimit, _Mapping]]] = ..., unpriced_price: _Optional[_Union[Price, _Mapping]] = ..., unpriced_models: _Optional[_Iterable[str]] = ..., default_max_output_tokens: _Optional[int] = ...) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = ("version", "content_hash", "created_unix_ms", "key_hash_scheme", "providers", "models", "aliases", "teams", "users", "projects", "keys", "budget_policy", "routing_rules", "loop_breakers", "guardrails")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_SCHEME_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_POLICY_FIELD_NUMBER: _ClassVar[int]
    ROUTING_RULES_FIELD_NUMBER: _ClassVar[int]
    LOOP_BREAKERS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    version: int
    content_hash: str
    created_unix_ms: int
    key_hash_scheme: str
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    teams: _containers.RepeatedCompositeFieldContainer[Team]
    users: _containers.RepeatedCompositeFieldContainer[User]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    keys: _containers.RepeatedCompositeFieldContainer[VirtualKey]
    budget_policy: BudgetPolicy
    routing_rules: _containers.RepeatedCompositeFieldContainer[RoutingRule]
    loop_breakers: _containers.RepeatedCompositeFieldContainer[LoopBreaker]
    guardrails: _containers.RepeatedCompositeFieldContainer[Guardrail]
    def __init__(self, version: _Optional[int] = ..., content_hash: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., key_hash_scheme: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ..., teams: _Optional[_Iterable[_Union[Team, _Mapping]]] = ..., users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ..., keys: _Optional[_Iterable[_Union[VirtualKey, _Mapping]]] = ..., budget_policy: _Optional[_Union[BudgetPolicy, _Mapping]] = ..., routing_rules: _Optional[_Iterable[_Union[RoutingRule, _Mapping]]] = ..., loop_breakers: _Optional[_Iterable[_Union[LoopBreaker, _Mapping]]] = ..., guardrails: _Optional[_Iterable[_Union[Guardrail, _Mapping]]] = ...) -> None: ...

class LoopBreaker(_message.Message):
    __slots__ = ("id", "scope", "scope_id", "identical_requests", "identical_window_s", "max_pico_per_minute", "velocity_window_s", "action")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTICAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    IDENTICAL_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MAX_PICO_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    VELOCITY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: str
    scope_id: str
    identical_requests: int
    identical_window_s: int
    max_pico_per_minute: int
    velocity_window_s: int
    action: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[str] = ..., scope_id: _Optional[str] = ..., identical_requests: _Optional[int] = ..., identical_window_s: _Optional[int] = ..., max_pico_per_minute: _Optional[int] = ..., velocity_window_s: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class GuardrailPattern(_message.Message):
    __slots__ = ("id", "regex", "keywords")
    ID_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    regex: str
    keywords: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., regex: _Optional[str] = ..., keywords: _Optional[_Iterable[str]] = ...) -> None: ...

class Guardrail(_message.Message):
    __slots__ = ("id", "detectors", "custom", "action", "direction", "sampling_percent", "mode", "fail_mode", "teams", "keys", "projects", "models", "routing_rules")
    ID_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FAIL_MODE_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_RULES_FIELD_NUMBER: _ClassVar[int]
    id: str
    detectors: _containers.RepeatedScalarFieldContainer[str]
    custom: _containers.RepeatedCompositeFieldContainer[GuardrailPattern]
    action: str
    direction: str
    sampling_percent: int
    mode: str
    fail_mode: str
    teams: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    projects: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    routing_rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., detectors: _Optional[_Iterable[str]] = ..., custom: _Optional[_Iterable[_Union[GuardrailPattern, _Mapping]]] = ..., action: _Optional[str] = ..., direction: _Optional[str] = ..., sampling_percent: _Optional[int] = ..., mode: _Optional[str] = ..., fail_mode: _Optional[str] = ..., teams: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ..., projects: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., routing_rules: _Optional[_Iterable[str]] = ...) -> None: ...
