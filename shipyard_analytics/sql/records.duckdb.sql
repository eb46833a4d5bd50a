-- The day's lines as typed rows, on DuckDB.
-- In:  lines(file, time, tag, record) -- one slice line split at its two tabs
--      slice_files(file, host)        -- the host each slice file is named after
-- Out: records: tag, time, host, record_id (the whole `_record_id`, which merge.sql splits),
--      the other schema.COLUMNS in order, then tie (a hash of the record's text).
-- json_transform parses each record once; a value of another type than its
-- column's reads as NULL. `record` keeps the JSON only when it has keys that
-- no column covers (schema.COVERED_KEYS).
SELECT
    lines.tag,
    CAST(lines.time AS TIMESTAMPTZ) AS time,
    slice_files.host,
    f._record_id AS record_id,
    f.host AS client,
    f['user'] AS remote_user,
    f.method,
    f.path,
    f.code,
    f.size,
    f.referer,
    f.agent,
    f.duration_us,
    f.level,
    f.message,
    CASE
        WHEN NOT starts_with(lines.record, '{') THEN error('a record is not a JSON object')
        WHEN list_has_all(
            ['_record_id', 'host', 'user', 'method', 'path', 'code', 'size', 'referer', 'agent',
             'duration_us', 'level', 'message', 'source_host'],
            json_keys(lines.record)
        ) THEN NULL
        ELSE lines.record
    END AS record,
    hash(lines.record) AS tie
FROM (
    SELECT
        *,
        json_transform(
            record,
            '{"_record_id": "VARCHAR", "host": "VARCHAR", "user": "VARCHAR", "method": "VARCHAR",
              "path": "VARCHAR", "code": "INTEGER", "size": "BIGINT", "referer": "VARCHAR",
              "agent": "VARCHAR", "duration_us": "BIGINT", "level": "VARCHAR", "message": "VARCHAR"}'
        ) AS f
    FROM lines
) AS lines
JOIN slice_files ON slice_files.file = lines.file
