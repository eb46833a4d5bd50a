-- The slowest paths by their 95th percentile time to serve (%D, microseconds),
-- over the requests that logged it; a path needs 10 timed requests to rank.
SELECT
    path,
    count(*) AS requests,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) AS p95_us,
    max(duration_us) AS max_us
FROM access_log
WHERE duration_us IS NOT NULL
GROUP BY path
HAVING count(*) >= 10
ORDER BY p95_us DESC, path
LIMIT 20
