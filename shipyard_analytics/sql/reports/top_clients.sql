-- The busiest client addresses, by requests, with the bytes sent to them.
SELECT client, count(*) AS hits, sum(size) AS bytes
FROM access_log
GROUP BY client
ORDER BY hits DESC, client
LIMIT 20
