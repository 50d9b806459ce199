"""The feature schema and the batch pipeline that hashes raw columns as the schema says."""

from adrank.features.pipeline import FeatureBatch, FeaturePipeline, SparseFeature
from adrank.features.schema import (
    FeatureSchema,
    FieldSpec,
    SchemaError,
    TableSpec,
    content_schema_path,
    criteo_schema_path,
    default_schema_path,
    load_schema,
    parse_schema,
)

__all__ = [
    "FeatureBatch",
    "FeaturePipeline",
    "FeatureSchema",
    "FieldSpec",
    "SchemaError",
    "SparseFeature",
    "TableSpec",
    "content_schema_path",
    "criteo_schema_path",
    "default_schema_path",
    "load_schema",
    "parse_schema",
]
