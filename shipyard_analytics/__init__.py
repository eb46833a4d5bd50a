"""shipyard's log warehouse: one day of collector slices merged into Hive-style Parquet.

The daily job (`python -m shipyard_analytics merge`) reads a day's
`time<TAB>tag<TAB>json` slices from the collector's store or from S3, keeps
one copy of each record, sorts by time and writes one Parquet file per day and
tag under `<warehouse>/logs/dt=YYYY-MM-DD/tag=<tag>/part-0.parquet`. The
reports are SQL files run by DuckDB (embedded, the default) or by Spark; see
README.md beside this file.
"""
