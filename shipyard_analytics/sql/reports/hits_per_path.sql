-- Hits per path for the day: the daily job's original report.
-- In: access_log (the day's access-log rows of the warehouse).
SELECT path, count(*) AS hits
FROM access_log
GROUP BY path
ORDER BY hits DESC, path
