-- Response size percentiles over the responses that carried a body (%b not '-').
SELECT
    count(size) AS responses,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY size) AS p50_bytes,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY size) AS p95_bytes
FROM access_log
WHERE size IS NOT NULL
