# Typed stub for adrank._native, the C++ extension. Private: use adrank.ops.
# tests/test_native_stub.py checks that this stub and the module name the same things.

import numpy as np
import numpy.typing as npt

def set_num_threads(num_threads: int) -> None: ...
def get_num_threads() -> int: ...
def set_simd(level: str) -> None: ...
def get_simd() -> str: ...

# --- hashing (cpp/bindings/bind_hashing.cpp) ---

class StringColumn:
    @staticmethod
    def from_objects(values: object) -> StringColumn: ...
    @staticmethod
    def from_arrow(
        data: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.int32] | npt.NDArray[np.int64],
        validity: npt.NDArray[np.uint8] | None,
        validity_offset: int,
    ) -> StringColumn: ...
    @staticmethod
    def from_fixed(data: npt.NDArray[np.uint8], itemsize: int, ucs4: bool) -> StringColumn: ...
    def __len__(self) -> int: ...

def hash_strings(
    values: StringColumn,
    key_offsets: npt.NDArray[np.int64],
    slots: npt.NDArray[np.int64],
    num_buckets: npt.NDArray[np.int64],
    seed: int,
    out: npt.NDArray[np.int64],
) -> None: ...
def hash_ids(
    ids: npt.NDArray[np.int64],
    validity: npt.NDArray[np.uint8] | None,
    validity_offset: int,
    key_offsets: npt.NDArray[np.int64],
    slots: npt.NDArray[np.int64],
    num_buckets: npt.NDArray[np.int64],
    seed: int,
    out: npt.NDArray[np.int64],
) -> None: ...
def hash_cross(
    columns: list[npt.NDArray[np.int64]],
    slot: int,
    num_buckets: int,
    seed: int,
    out: npt.NDArray[np.int64],
) -> None: ...
def bucketize(
    values: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    boundaries: npt.NDArray[np.float64],
    out: npt.NDArray[np.int64],
) -> None: ...
def hash_sklearn(
    values: StringColumn,
    n_features: int,
    alternate_sign: bool,
    indices: npt.NDArray[np.int64],
    signs: npt.NDArray[np.int8],
) -> None: ...

# --- embedding (cpp/bindings/bind_embedding.cpp) ---

class TableType:
    float32: TableType
    float16: TableType
    int8_rowwise: TableType
    __members__: dict[str, TableType]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class PoolingMode:
    sum: PoolingMode
    mean: PoolingMode
    max: PoolingMode
    __members__: dict[str, PoolingMode]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Table:
    def __init__(
        self,
        data: npt.NDArray[np.float32] | npt.NDArray[np.float16] | npt.NDArray[np.uint8],
        type: TableType,
    ) -> None: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def type(self) -> TableType: ...
    @property
    def data(self) -> np.ndarray: ...

def embedding_bag(
    table: Table,
    indices: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    mode: PoolingMode,
    per_sample_weights: npt.NDArray[np.float32] | None,
    include_last_offset: bool,
    padding_idx: int,
    out: npt.NDArray[np.float32],
) -> None: ...

class Collection:
    def __init__(
        self, tables: list[Table], modes: list[PoolingMode], padding_idx: list[int]
    ) -> None: ...
    @property
    def width(self) -> int: ...
    def __call__(
        self,
        values: npt.NDArray[np.int32] | npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int64],
        per_sample_weights: npt.NDArray[np.float32] | None,
        out: npt.NDArray[np.float32],
    ) -> None: ...

def embedding_bag_collection(
    tables: list[Table],
    modes: list[PoolingMode],
    padding_idx: list[int],
    values: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    per_sample_weights: npt.NDArray[np.float32] | None,
    out: npt.NDArray[np.float32],
) -> None: ...

# --- top-k (cpp/bindings/bind_topk.cpp) ---

def topk(
    scores: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64] | None,
    k: int,
    values_out: npt.NDArray[np.float32] | None,
    indices_out: npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def select(
    scores: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64] | None,
    k: int,
    group_ids: list[npt.NDArray[np.int64]],
    caps: list[int],
    eligible: npt.NDArray[np.bool_] | None,
    min_score: float,
    values_out: npt.NDArray[np.float32] | None,
    indices_out: npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

# --- auction (cpp/bindings/bind_auction.cpp) ---

class AuctionCatalog:
    def __init__(
        self,
        creative_id: npt.NDArray[np.int64],
        advertiser_id: npt.NDArray[np.int64],
        category: npt.NDArray[np.int64],
        objective: npt.NDArray[np.int8],
        bid: npt.NDArray[np.float64],
        target_cpa: npt.NDArray[np.float64],
        region_mask: npt.NDArray[np.uint64],
        active: npt.NDArray[np.bool_],
        ad_id: npt.NDArray[np.int64] | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...

def auction(
    catalog: AuctionCatalog,
    rows: npt.NDArray[np.int64],
    p_ctr: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    p_cvr: npt.NDArray[np.float32] | npt.NDArray[np.float64] | None,
    p_neg: npt.NDArray[np.float32] | npt.NDArray[np.float64] | None,
    pacing: npt.NDArray[np.float64] | None,
    killed: npt.NDArray[np.bool_] | None,
    k: int,
    reserve_ecpm: float,
    neg_penalty: float,
    max_per_advertiser: int,
    region_bit: int,
    blocked_categories: npt.NDArray[np.int64] | None,
    recently_seen: npt.NDArray[np.int64] | None,
    frequency_cap: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

# --- dynamic table (cpp/bindings/bind_dynamic_table.cpp) ---

class DynamicTable:
    def __init__(
        self,
        *,
        dim: int,
        memory_limit_bytes: int,
        admit_threshold: int,
        admit_probability: float,
        sketch_width: int,
        sketch_depth: int,
        ttl: int,
        rare_ttl: int,
        rare_count: int,
        init_scale: float,
        seed: int,
    ) -> None: ...
    @property
    def config(self) -> dict[str, int | float]: ...
    @property
    def max_rows(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def peak_memory_bytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: int) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def observe(
        self, ids: npt.NDArray[np.int64], now: int, admitted: npt.NDArray[np.uint8]
    ) -> None: ...
    def upsert(
        self, ids: npt.NDArray[np.int64], values: npt.NDArray[np.float32], now: int
    ) -> None: ...
    def remove(self, ids: npt.NDArray[np.int64]) -> int: ...
    def expire(self, now: int) -> int: ...
    def apply_adagrad(
        self,
        ids: npt.NDArray[np.int64],
        grads: npt.NDArray[np.float32],
        lr: float,
        eps: float,
        now: int,
    ) -> int: ...
    def set_default_row(self, values: npt.NDArray[np.float32] | None) -> None: ...
    def lookup(
        self,
        ids: npt.NDArray[np.int64],
        out: npt.NDArray[np.float32],
        found: npt.NDArray[np.uint8] | None,
    ) -> int: ...
    def embedding_bag(
        self,
        indices: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        mode: PoolingMode,
        per_sample_weights: npt.NDArray[np.float32] | None,
        include_last_offset: bool,
        padding_idx: int,
        out: npt.NDArray[np.float32],
    ) -> int: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str, memory_limit_bytes: int) -> DynamicTable: ...
    def export_delta(self, path: str) -> tuple[int, bool]: ...
    def apply_delta(self, path: str) -> int: ...
    def ids(self) -> npt.NDArray[np.int64]: ...
    def row_meta(self, id: int) -> tuple[int, int, float] | None: ...
