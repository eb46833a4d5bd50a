-- The day's lines as typed rows, on Spark SQL: records.duckdb.sql in Spark's functions.
-- In:  lines(file, time, tag, record), slice_files(file, host)
-- Out: records: tag, time, host, record_id (the whole `_record_id`, which merge.sql splits),
--      the other schema.COLUMNS in order, then tie (a hash of the record's text).
SELECT
    lines.tag,
    CAST(lines.time AS TIMESTAMP) AS time,
    slice_files.host,
    f._record_id AS record_id,
    f.host AS client,
    f.`user` AS remote_user,
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
        WHEN NOT startswith(lines.record, '{') THEN raise_error('a record is not a JSON object')
        WHEN size(array_except(
            json_object_keys(lines.record),
            array('_record_id', 'host', 'user', 'method', 'path', 'code', 'size', 'referer', 'agent',
                  'duration_us', 'level', 'message', 'source_host')
        )) = 0 THEN NULL
        ELSE lines.record
    END AS record,
    xxhash64(lines.record) AS tie
FROM (
    SELECT
        *,
        from_json(
            record,
            '_record_id STRING, host STRING, user STRING, method STRING, path STRING, code INT,
             size BIGINT, referer STRING, agent STRING, duration_us BIGINT, level STRING,
             message STRING'
        ) AS f
    FROM lines
) AS lines
JOIN slice_files ON slice_files.file = lines.file
