-- The status-code mix per hour (UTC) of the day.
SELECT hour(time) AS hour, code, count(*) AS hits
FROM access_log
GROUP BY hour(time), code
ORDER BY hour, code
