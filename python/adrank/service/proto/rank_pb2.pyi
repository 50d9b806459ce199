from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureValue(_message.Message):
    __slots__ = ("int_value", "number_value", "string_value", "int_list", "string_list")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_LIST_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    number_value: float
    string_value: str
    int_list: Int64List
    string_list: StringList
    def __init__(self, int_value: _Optional[int] = ..., number_value: _Optional[float] = ..., string_value: _Optional[str] = ..., int_list: _Optional[_Union[Int64List, _Mapping]] = ..., string_list: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("max_per_advertiser", "blocked_categories", "frequency_cap")
    MAX_PER_ADVERTISER_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_CAP_FIELD_NUMBER: _ClassVar[int]
    max_per_advertiser: int
    blocked_categories: _containers.RepeatedScalarFieldContainer[int]
    frequency_cap: int
    def __init__(self, max_per_advertiser: _Optional[int] = ..., blocked_categories: _Optional[_Iterable[int]] = ..., frequency_cap: _Optional[int] = ...) -> None: ...

class Feed(_message.Message):
    __slots__ = ("values", "slots")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    slots: int
    def __init__(self, values: _Optional[_Iterable[float]] = ..., slots: _Optional[int] = ...) -> None: ...

class CandidateRow(_message.Message):
    __slots__ = ("creative_id", "bid", "objective", "advertiser_id", "campaign_id", "category", "target_cpa", "regions", "status", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    CREATIVE_ID_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    ADVERTISER_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TARGET_CPA_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    creative_id: int
    bid: float
    objective: str
    advertiser_id: int
    campaign_id: int
    category: int
    target_cpa: float
    regions: _containers.RepeatedScalarFieldContainer[str]
    status: str
    features: _containers.MessageMap[str, FeatureValue]
    def __init__(self, creative_id: _Optional[int] = ..., bid: _Optional[float] = ..., objective: _Optional[str] = ..., advertiser_id: _Optional[int] = ..., campaign_id: _Optional[int] = ..., category: _Optional[int] = ..., target_cpa: _Optional[float] = ..., regions: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., features: _Optional[_Mapping[str, FeatureValue]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("request_id", "user", "context", "candidates", "k", "region", "recently_seen", "constraints", "feed", "candidate_rows")
    class UserEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    RECENTLY_SEEN_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    FEED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ROWS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user: _containers.MessageMap[str, FeatureValue]
    context: _containers.MessageMap[str, FeatureValue]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    k: int
    region: str
    recently_seen: _containers.RepeatedScalarFieldContainer[int]
    constraints: Constraints
    feed: Feed
    candidate_rows: _containers.RepeatedCompositeFieldContainer[CandidateRow]
    def __init__(self, request_id: _Optional[str] = ..., user: _Optional[_Mapping[str, FeatureValue]] = ..., context: _Optional[_Mapping[str, FeatureValue]] = ..., candidates: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., region: _Optional[str] = ..., recently_seen: _Optional[_Iterable[int]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., feed: _Optional[_Union[Feed, _Mapping]] = ..., candidate_rows: _Optional[_Iterable[_Union[CandidateRow, _Mapping]]] = ...) -> None: ...

class RankedCreative(_message.Message):
    __slots__ = ("creative_id", "campaign_id", "advertiser_id", "p_ctr", "p_cvr", "p_neg", "ecpm", "price", "slot", "propensity")
    CREATIVE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ADVERTISER_ID_FIELD_NUMBER: _ClassVar[int]
    P_CTR_FIELD_NUMBER: _ClassVar[int]
    P_CVR_FIELD_NUMBER: _ClassVar[int]
    P_NEG_FIELD_NUMBER: _ClassVar[int]
    ECPM_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    creative_id: int
    campaign_id: int
    advertiser_id: int
    p_ctr: float
    p_cvr: float
    p_neg: float
    ecpm: float
    price: float
    slot: int
    propensity: float
    def __init__(self, creative_id: _Optional[int] = ..., campaign_id: _Optional[int] = ..., advertiser_id: _Optional[int] = ..., p_ctr: _Optional[float] = ..., p_cvr: _Optional[float] = ..., p_neg: _Optional[float] = ..., ecpm: _Optional[float] = ..., price: _Optional[float] = ..., slot: _Optional[int] = ..., propensity: _Optional[float] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("request_id", "model_version", "degraded", "unknown_candidates", "duplicate_candidates", "creatives", "timings_ms", "arms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ArmsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CREATIVES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model_version: str
    degraded: bool
    unknown_candidates: int
    duplicate_candidates: int
    creatives: _containers.RepeatedCompositeFieldContainer[RankedCreative]
    timings_ms: _containers.ScalarMap[str, float]
    arms: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., model_version: _Optional[str] = ..., degraded: bool = ..., unknown_candidates: _Optional[int] = ..., duplicate_candidates: _Optional[int] = ..., creatives: _Optional[_Iterable[_Union[RankedCreative, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., arms: _Optional[_Mapping[str, str]] = ...) -> None: ...
