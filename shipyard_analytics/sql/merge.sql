-- One copy of each record, for DuckDB and Spark alike.
-- In:  records (records.<engine>.sql). Out: tag, schema.COLUMNS in order, tie; no duplicates.
-- A record with an id (the collector's `_record_id`) is kept once per id: a
-- resent chunk repeats its records exactly. A record without one is always
-- kept: two of them may be two events in the same second, and nothing can
-- tell them from a resend. One scan of `records`: a UNION of the two kinds
-- would parse every line's JSON twice.
-- The id is stored split at its last '-' (RECORD_ID_PATTERN, schema.py): the
-- chunk id, which repeats, and the record's index in the chunk, an int.
SELECT
    tag, time, host,
    CASE
        WHEN regexp_extract(record_id, RECORD_ID_PATTERN, 2) = '' THEN record_id
        ELSE regexp_extract(record_id, RECORD_ID_PATTERN, 1)
    END AS record_chunk,
    CASE
        WHEN regexp_extract(record_id, RECORD_ID_PATTERN, 2) <> ''
            THEN CAST(regexp_extract(record_id, RECORD_ID_PATTERN, 2) AS INT)
    END AS record_index,
    client, remote_user, method, path, code, size,
    referer, agent, duration_us, level, message, record, tie
FROM (
    SELECT
        *,
        CASE
            WHEN record_id IS NULL THEN 1
            ELSE row_number() OVER (PARTITION BY record_id ORDER BY tie)
        END AS copy
    FROM records
) AS numbered
WHERE copy = 1
