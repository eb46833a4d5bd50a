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

require __DIR__ . '/shipyard-s3.php';

/** @return array{0: string, 1: list<array>} the newest object for this host and its access lines */
function shipyard_shipped_lines(array $c): array
{
    $listed = shipyard_s3_list($c, $c['prefix'] . 'logs/');
    if ($listed === null) {
        return ['(cannot list the bucket)', []];
    }
    $keys = array_values(array_filter($listed, fn ($k) => str_contains($k, '/' . $c['log_host'] . '-')));
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
