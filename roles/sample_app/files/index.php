<?php
// shipyard sample application: one page proving the stack works end to end.
// A row from MariaDB (mysqli), a row from PostgreSQL (pgsql, over the
// network), and the latest access-log lines this host shipped, read back
// from the S3 bucket the log collector uploads to.
declare(strict_types=1);

$settings = parse_ini_file('/etc/shipyard/sample-app.ini', true, INI_SCANNER_RAW);
if ($settings === false) {
    http_response_code(500);
    exit("missing /etc/shipyard/sample-app.ini\n");
}

function shipyard_mariadb_row(array $c): string
{
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    try {
        $db = new mysqli($c['host'], $c['user'], $c['password'], $c['database']);
        $row = $db->query('SELECT body FROM greetings WHERE id = 1')->fetch_row();
        return $row[0] ?? '(no row)';
    } catch (mysqli_sql_exception $e) {
        return 'error: ' . $e->getMessage();
    }
}

function shipyard_postgresql_row(array $c): string
{
    $dsn = sprintf(
        "host='%s' dbname='%s' user='%s' password='%s' connect_timeout=5",
        ...array_map(
            fn ($v) => addcslashes($v, "'\\"),
            [$c['host'], $c['database'], $c['user'], $c['password']]
        )
    );
    $db = @pg_connect($dsn);
    if ($db === false) {
        return 'error: cannot connect to PostgreSQL';
    }
    $result = pg_query($db, 'SELECT body FROM greetings WHERE id = 1');
    $row = $result === false ? false : pg_fetch_row($result);
    return $row === false ? '(no row)' : $row[0];
}

// AWS Signature Version 4 for a GET, so the page works against any
// S3-compatible store, not only the dev environment's.
function shipyard_s3_get(array $c, string $key, array $query = []): ?string
{
    $url = parse_url($c['endpoint']);
    $host = $url['host'] . (isset($url['port']) ? ':' . $url['port'] : '');
    $path = '/' . implode('/', array_map('rawurlencode', explode('/', $c['bucket'] . ($key === '' ? '' : '/' . $key))));
    ksort($query);
    $qs = http_build_query($query, '', '&', PHP_QUERY_RFC3986);
    $now = gmdate('Ymd\THis\Z');
    $day = substr($now, 0, 8);
    $payload = hash('sha256', '');
    $headers = "host:$host\nx-amz-content-sha256:$payload\nx-amz-date:$now\n";
    $signed = 'host;x-amz-content-sha256;x-amz-date';
    $canonical = "GET\n$path\n$qs\n$headers\n$signed\n$payload";
    $scope = "$day/{$c['region']}/s3/aws4_request";
    $toSign = "AWS4-HMAC-SHA256\n$now\n$scope\n" . hash('sha256', $canonical);
    $k = 'AWS4' . $c['secret_access_key'];
    foreach ([$day, $c['region'], 's3', 'aws4_request'] as $part) {
        $k = hash_hmac('sha256', $part, $k, true);
    }
    $auth = sprintf(
        'AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s',
        $c['access_key_id'], $scope, $signed, hash_hmac('sha256', $toSign, $k)
    );
    $curl = curl_init($c['endpoint'] . $path . ($qs === '' ? '' : "?$qs"));
    curl_setopt_array($curl, [
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 10,
        CURLOPT_HTTPHEADER => ["x-amz-content-sha256: $payload", "x-amz-date: $now", "Authorization: $auth"],
    ]);
    $body = curl_exec($curl);
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    return ($body === false || $status !== 200) ? null : $body;
}

/** @return array{0: string, 1: list<array>} the newest object for this host and its access lines */
function shipyard_shipped_lines(array $c): array
{
    $keys = [];
    $token = null;
    do {
        $query = ['list-type' => '2', 'prefix' => $c['prefix'] . 'logs/'];
        if ($token !== null) {
            $query['continuation-token'] = $token;
        }
        $xml = shipyard_s3_get($c, '', $query);
        if ($xml === null) {
            return ['(cannot list the bucket)', []];
        }
        $list = simplexml_load_string($xml);
        foreach ($list->Contents as $item) {
            if (str_contains((string) $item->Key, '/' . $c['log_host'] . '-')) {
                $keys[] = (string) $item->Key;
            }
        }
        $token = (string) $list->IsTruncated === 'true' ? (string) $list->NextContinuationToken : null;
    } while ($token !== null);
    if ($keys === []) {
        return ['(nothing shipped for this host yet: slices are uploaded once closed)', []];
    }
    sort($keys);
    $newest = end($keys);
    $body = shipyard_s3_get($c, $newest);
    $text = $body === null ? false : gzdecode($body);
    if ($text === false) {
        return ["(cannot read $newest)", []];
    }
    $lines = [];
    foreach (explode("\n", trim($text)) as $line) {
        [$time, $tag, $json] = explode("\t", $line, 3) + ['', '', '{}'];
        if ($tag === 'apache.access') {
            $lines[] = ['time' => $time] + (json_decode($json, true) ?? []);
        }
    }
    return [$newest, array_slice($lines, -(int) $c['log_lines'])];
}

$h = fn ($v) => htmlspecialchars((string) $v, ENT_QUOTES);
[$object, $shipped] = shipyard_shipped_lines($settings['s3']);
header('Content-Type: text/html; charset=utf-8');
?>
<!doctype html>
<title>shipyard</title>
<h1>shipyard dev environment</h1>
<h2>MariaDB</h2>
<p id="mariadb"><?= $h(shipyard_mariadb_row($settings['mariadb'])) ?></p>
<h2>PostgreSQL</h2>
<p id="postgresql"><?= $h(shipyard_postgresql_row($settings['postgresql'])) ?></p>
<h2>Shipped access log (from S3)</h2>
<p>Object: <code id="s3-object"><?= $h($object) ?></code></p>
<table id="shipped">
<tr><th>time</th><th>method</th><th>path</th><th>code</th></tr>
<?php foreach ($shipped as $r): ?>
<tr><td><?= $h($r['time']) ?></td><td><?= $h($r['method'] ?? '') ?></td><td><?= $h($r['path'] ?? '') ?></td><td><?= $h($r['code'] ?? '') ?></td></tr>
<?php endforeach; ?>
</table>
