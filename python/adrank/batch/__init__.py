"""Offline work over partitioned Parquet on Ray: ranking and scoring logged requests or feature
rows, and training-data preparation, with the serving code (Ranker, FeaturePipeline) in each
worker.

Glossary: a *partition* is one Parquet file of the input directory (``part-000001.parquet``,
or any ``*.parquet`` under it); its *output* has the same relative path under the output
directory; a *job* (:mod:`adrank.batch.jobs`) turns one partition's table into its output
table; a *worker* is a Ray actor that builds the job once and runs it over the partitions Ray
Data hands it (:mod:`adrank.batch.ray_runner`).
"""
