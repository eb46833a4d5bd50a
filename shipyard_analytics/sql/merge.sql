-- One copy of each record, for DuckDB and Spark alike.
-- In:  records (records.<engine>.sql). Out: tag, schema.COLUMNS in order, tie; no duplicates.
-- A record with an id (the collector's `_record_id`) is kept once per id: a
-- resent chunk repeats its records exactly. A record without one is always
-- kept: two of them may be two events in the same second, and nothing can
-- tell them from a resend. One scan of `records`: a UNION of the two kinds
-- would parse every line's JSON twice.
-- The id is stored split at its last '-' when what follows is an index
-- (the index pattern of schema.py): the chunk id, which repeats, and the
-- record's index in the chunk, an int. Any other id stays whole.
SELECT
    tag, time, host,
    CASE
        WHEN split THEN substr(record_id, 1, length(record_id) - length(tail) - 1)
        ELSE record_id
    END AS record_chunk,
    CASE WHEN split THEN CAST(tail AS INT) END AS record_index,
    client, remote_user, method, path, code, size,
    referer, agent, duration_us, level, message, record, tie
FROM (
    SELECT
        *,
        length(tail) < length(record_id)
        AND regexp_extract(tail, RECORD_INDEX_PATTERN, 1) <> '' AS split
    FROM (
        SELECT *, split_part(record_id, '-', -1) AS tail
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
    ) AS kept
) AS cut
