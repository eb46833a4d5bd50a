-- One copy of each record, for DuckDB and Spark alike.
-- In:  records (records.<engine>.sql). Out: the same columns, without duplicates.
-- A record with an id (the collector's `_record_id`) is kept once per id: a
-- resent chunk repeats its records exactly. A record without one is always
-- kept: two of them may be two events in the same second, and nothing can
-- tell them from a resend. One scan of `records`: a UNION of the two kinds
-- would parse every line's JSON twice.
SELECT
    tag, time, host, record_id, client, remote_user, method, path, code, size,
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
