<?php
// shipyard dashboard: the dev environment at a glance, in one self-contained
// page (no script, no font, no request to any other host; charts are inline
// SVG drawn here).
//  - Services: probed live from this container (the application's view), next
//    to each container's Docker health and image version from the last
//    status snapshot (`make report` writes it: the page cannot ask Docker).
//  - Log shipping: the agents' and the collector's stats files, from the
//    same snapshot.
//  - The daily report: the newest warehouse/reports/dt=.../daily.json in S3,
//    written by the daily merge (python -m shipyard_analytics merge).
declare(strict_types=1);

require __DIR__ . '/shipyard-s3.php';

$settings = parse_ini_file('/etc/shipyard/sample-app.ini', true, INI_SCANNER_RAW);
if ($settings === false) {
    http_response_code(500);
    exit("missing /etc/shipyard/sample-app.ini\n");
}
$board = $settings['dashboard'];
$h = fn ($v): string => htmlspecialchars((string) $v, ENT_QUOTES);

/** @return array{ok: bool, version: string, detail: string} */
function shipyard_probe(callable $probe): array
{
    $started = microtime(true);
    try {
        $version = (string) $probe();
        $ok = true;
        $detail = sprintf('%.0f ms', (microtime(true) - $started) * 1000);
    } catch (Throwable $e) {
        $version = '';
        $ok = false;
        $detail = $e->getMessage();
    }
    return ['ok' => $ok, 'version' => $version, 'detail' => $detail];
}

function shipyard_probe_mariadb(array $c): string
{
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    $db = new mysqli($c['host'], $c['user'], $c['password'], $c['database']);
    return (string) $db->query('SELECT VERSION()')->fetch_row()[0];
}

function shipyard_probe_postgresql(array $c): string
{
    $dsn = sprintf(
        "host='%s' dbname='%s' user='%s' password='%s' connect_timeout=3",
        ...array_map(fn ($v) => addcslashes($v, "'\\"), [$c['host'], $c['database'], $c['user'], $c['password']])
    );
    $db = @pg_connect($dsn);
    if ($db === false) {
        throw new RuntimeException('cannot connect');
    }
    return (string) pg_version($db)['server'];
}

function shipyard_probe_s3(array $c): string
{
    if (shipyard_s3_get($c, '', ['list-type' => '2', 'max-keys' => '1']) === null) {
        throw new RuntimeException("cannot list bucket {$c['bucket']}");
    }
    return '';
}

function shipyard_probe_tcp(string $host, int $port): string
{
    $socket = @fsockopen($host, $port, $errno, $error, 3.0);
    if ($socket === false) {
        throw new RuntimeException("$host:$port: $error");
    }
    fclose($socket);
    return '';
}

/** @return array<string, mixed>|null */
function shipyard_json_file(string $path): ?array
{
    $text = @file_get_contents($path);
    $data = $text === false ? null : json_decode($text, true);
    return is_array($data) ? $data : null;
}

/** @return array{0: string|null, 1: array<string, mixed>|null} the newest daily report's key and content */
function shipyard_latest_report(array $s3, string $prefix): array
{
    $keys = shipyard_s3_list($s3, $prefix . 'reports/');
    $keys = array_values(array_filter($keys ?? [], fn ($k) => str_ends_with($k, '/daily.json')));
    if ($keys === []) {
        return [null, null];
    }
    sort($keys);
    $key = end($keys);
    $body = shipyard_s3_get($s3, $key);
    $data = $body === null ? null : json_decode($body, true);
    return [$key, is_array($data) ? $data : null];
}

/** @return array<string, int> column values of a report as name => number */
function shipyard_report_pairs(?array $report, string $name, int $limit): array
{
    $pairs = [];
    foreach (array_slice($report['reports'][$name]['rows'] ?? [], 0, $limit) as $row) {
        $pairs[(string) $row[0]] = (int) $row[1];
    }
    return $pairs;
}

/** Horizontal bars, one per label, scaled to the largest value. */
function shipyard_bar_chart(array $values, string $id, callable $h): string
{
    if ($values === []) {
        return '<p class="empty">No data in the report.</p>';
    }
    $row = 22;
    $height = $row * count($values) + 4;
    $max = max(1, max($values));
    $svg = "<svg id=\"$id\" class=\"chart\" viewBox=\"0 0 640 $height\" role=\"img\" preserveAspectRatio=\"xMinYMin meet\">";
    $y = 2;
    foreach ($values as $label => $value) {
        $width = max(1, round(300 * $value / $max));
        $short = mb_strlen((string) $label) > 40 ? mb_substr((string) $label, 0, 39) . '…' : (string) $label;
        $svg .= sprintf(
            '<g class="bar" data-label="%s" data-value="%d"><title>%s: %d</title>'
            . '<text x="270" y="%d" text-anchor="end">%s</text>'
            . '<rect x="276" y="%d" width="%d" height="%d" rx="2"></rect>'
            . '<text class="value" x="%d" y="%d">%d</text></g>',
            $h($label), $value, $h($label), $value,
            $y + 15, $h($short),
            $y + 3, $width, $row - 6,
            280 + $width, $y + 15, $value
        );
        $y += $row;
    }
    return $svg . '</svg>';
}

/** 24 stacked columns, one per UTC hour, split by status class. */
function shipyard_hour_chart(?array $report, callable $h): string
{
    $classes = ['2xx' => 0, '3xx' => 0, '4xx' => 0, '5xx' => 0, 'other' => 0];
    $hours = array_fill(0, 24, $classes);
    foreach ($report['reports']['codes_per_hour']['rows'] ?? [] as [$hour, $code, $hits]) {
        $class = $code !== null && $code >= 200 && $code < 600 ? intdiv((int) $code, 100) . 'xx' : 'other';
        $hours[(int) $hour][$class] += (int) $hits;
    }
    $max = max(1, max(array_map('array_sum', $hours)));
    $svg = '<svg id="codes-per-hour" class="chart" viewBox="0 0 600 240" role="img" preserveAspectRatio="xMinYMin meet">';
    foreach ($hours as $hour => $counts) {
        $x = 30 + $hour * 23;
        $base = 210;
        $svg .= sprintf('<g class="hour" data-hour="%d" data-total="%d">', $hour, array_sum($counts));
        foreach ($counts as $class => $count) {
            if ($count === 0) {
                continue;
            }
            $height = max(1, round(190 * $count / $max));
            $base -= $height;
            $svg .= sprintf(
                '<rect class="c%s" data-class="%s" data-value="%d" x="%d" y="%d" width="18" height="%d"><title>%02d:00 %s: %d</title></rect>',
                $class, $class, $count, $x, $base, $height, $hour, $class, $count
            );
        }
        $svg .= $hour % 3 === 0 ? sprintf('<text x="%d" y="228" text-anchor="middle">%02d</text>', $x + 9, $hour) : '';
        $svg .= '</g>';
    }
    $svg .= sprintf('<text x="2" y="24">%d</text><line x1="28" y1="210" x2="586" y2="210"></line>', $max);
    $legend = '';
    foreach (array_keys($classes) as $i => $class) {
        $legend .= sprintf('<rect class="c%s" x="%d" y="0" width="10" height="10"></rect><text x="%d" y="10">%s</text>', $class, 300 + $i * 58, 314 + $i * 58, $class);
    }
    return $svg . "<g class=\"legend\">$legend</g></svg>";
}

$status = shipyard_json_file($board['status_file']);
$containers = [];
foreach ($status['containers'] ?? [] as $c) {
    $containers[$c['service']] = $c;
}
$probes = [
    'web' => ['Apache + PHP-FPM', shipyard_probe(fn () => ($_SERVER['SERVER_SOFTWARE'] ?? 'Apache') . ', PHP ' . PHP_VERSION), 'lamp'],
    'mariadb' => ['MariaDB', shipyard_probe(fn () => shipyard_probe_mariadb($settings['mariadb'])), 'lamp'],
    'postgresql' => ['PostgreSQL', shipyard_probe(fn () => shipyard_probe_postgresql($settings['postgresql'])), 'postgresql'],
    'collector' => ['Log collector', shipyard_probe(fn () => shipyard_probe_tcp($board['collector_host'], (int) $board['collector_port'])), 'log-collector'],
    's3' => ['S3', shipyard_probe(fn () => shipyard_probe_s3($settings['s3'])), 's3'],
];
[$reportKey, $report] = shipyard_latest_report($settings['s3'], $board['warehouse_prefix']);
$paths = shipyard_report_pairs($report, 'hits_per_path', (int) $board['chart_rows']);
$clients = shipyard_report_pairs($report, 'top_clients', 10);
$sizes = $report['reports']['response_size']['rows'][0] ?? null;
$slowest = array_slice($report['reports']['slowest_paths']['rows'] ?? [], 0, 10);
$collector = $status['collector'] ?? null;
$agents = $status['agents'] ?? [];
header('Content-Type: text/html; charset=utf-8');
header("Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src 'self'");
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shipyard dashboard</title>
<style>
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: #f6f8fa; }
header, main { max-width: 1100px; margin: 0 auto; padding: 12px 16px; }
header h1 { font-size: 1.3rem; margin: 0; }
header p { margin: 2px 0; color: var(--muted); font-size: .85rem; }
main { display: grid; gap: 16px; grid-template-columns: 1fr; }
@media (min-width: 860px) { main { grid-template-columns: 1fr 1fr; } .wide { grid-column: 1 / -1; } }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
h2 { font-size: 1.05rem; margin: 0 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: 4px 8px 4px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: .8rem; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.warn { background: var(--warn); }
.chart { width: 100%; max-width: 760px; height: auto; display: block; font-size: 12px; }
.chart .bar rect { fill: #0969da; } .chart text { fill: var(--ink); } .chart text.value { fill: var(--muted); }
.chart line { stroke: var(--muted); }
.c2xx { fill: #1a7f37; } .c3xx { fill: #0969da; } .c4xx { fill: #bf8700; } .c5xx { fill: #cf222e; } .cother { fill: #8c959f; }
.empty, .note { color: var(--muted); font-size: .9rem; }
code { font-size: .85em; word-break: break-all; }
</style>
</head>
<body>
<header>
<h1>shipyard dev environment</h1>
<p id="snapshot">Status snapshot: <?= $status ? $h($status['generated'] ?? '?') : 'none yet (run <code>make report</code>)' ?></p>
<p id="report-key">Daily report: <?= $reportKey === null ? 'none yet (run <code>make report</code>)' : '<code>' . $h($reportKey) . '</code>' ?></p>
</header>
<main>
<section class="wide" id="services">
<h2>Services</h2>
<div class="scroll"><table id="health">
<tr><th>service</th><th>probe</th><th>version</th><th>container</th><th>health</th><th>image</th></tr>
<?php foreach ($probes as $id => [$label, $probe, $service]):
    $c = $containers[$service] ?? null;
    $health = $c['health'] ?? 'unknown'; ?>
<tr data-service="<?= $h($id) ?>">
<td><?= $h($label) ?></td>
<td><span class="badge <?= $probe['ok'] ? 'ok' : 'bad' ?>"><?= $probe['ok'] ? 'up' : 'down' ?></span> <span class="note"><?= $h($probe['detail']) ?></span></td>
<td class="version"><?= $h($probe['version']) ?></td>
<td><?= $h($c['name'] ?? '') ?></td>
<td class="health"><span class="badge <?= $health === 'healthy' ? 'ok' : ($health === 'unknown' ? '' : 'bad') ?>"><?= $h($health) ?></span></td>
<td class="image"><?= $h(($c['image'] ?? '') . (isset($c['version']) ? ' (' . $c['version'] . ')' : '')) ?></td>
</tr>
<?php endforeach; ?>
</table></div>
</section>

<section id="shipping">
<h2>Log shipping</h2>
<div class="scroll"><table id="sources">
<tr><th>agent</th><th>source</th><th class="n">lines shipped</th><th class="n">behind (bytes)</th></tr>
<?php foreach ($agents as $agent => $stats):
    foreach (($stats['sources'] ?? []) as $tag => $source): ?>
<tr data-agent="<?= $h($agent) ?>" data-tag="<?= $h($tag) ?>">
<td><?= $h($agent) ?> <span class="badge <?= ($stats['connected'] ?? false) ? 'ok' : 'warn' ?>"><?= ($stats['connected'] ?? false) ? 'connected' : 'not connected' ?></span></td>
<td><?= $h($tag) ?></td>
<td class="n lines"><?= $h($source['lines_shipped'] ?? '') ?></td>
<td class="n behind"><?= $h($source['bytes_behind'] ?? '') ?></td>
</tr>
<?php endforeach; endforeach; ?>
<?php if ($agents === []): ?><tr><td colspan="4" class="empty">No agent stats in the snapshot.</td></tr><?php endif; ?>
</table></div>
<?php if ($collector): ?>
<table id="collector">
<tr><th>collector</th><td class="n"><?= $h($collector['lines_total'] ?? '') ?> lines, <?= $h($collector['connections'] ?? 0) ?> connections<?= ($collector['disk_full'] ?? false) ? ', <span class="badge bad">disk full</span>' : '' ?></td></tr>
<?php foreach ($collector['stores'] ?? [] as $store): ?>
<tr class="store" data-store="<?= $h($store['name'] ?? '') ?>"><th>store <?= $h($store['name'] ?? '') ?></th><td>
backlog <span class="pending"><?= $h($store['pending_slices'] ?? 0) ?></span> slices (<?= $h($store['pending_bytes'] ?? 0) ?> bytes),
<?= $h($store['upload_errors'] ?? 0) ?> upload errors<br>
last upload: <?= isset($store['last_upload']['key']) ? '<code class="last-upload">' . $h($store['last_upload']['key']) . '</code> at ' . $h($store['last_upload']['time'] ?? '') : 'none yet' ?>
</td></tr>
<?php endforeach; ?>
</table>
<?php else: ?><p class="empty">No collector stats in the snapshot.</p><?php endif; ?>
</section>

<section id="sizes">
<h2>Responses <?= $report ? $h($report['date']) : '' ?></h2>
<?php if ($sizes): ?>
<table><tr><th>responses with a body</th><td class="n" id="responses"><?= $h($sizes[0]) ?></td></tr>
<tr><th>p50 size</th><td class="n" id="p50"><?= $h(round((float) $sizes[1])) ?> B</td></tr>
<tr><th>p95 size</th><td class="n" id="p95"><?= $h(round((float) $sizes[2])) ?> B</td></tr></table>
<?php else: ?><p class="empty">No report yet.</p><?php endif; ?>
<h2>Top clients</h2>
<?= shipyard_bar_chart($clients, 'top-clients', $h) ?>
</section>

<section class="wide" id="paths">
<h2>Hits per path <?= $report ? $h($report['date']) : '' ?></h2>
<?= shipyard_bar_chart($paths, 'hits-per-path', $h) ?>
</section>

<section class="wide" id="codes">
<h2>Status codes per hour (UTC)</h2>
<?= $report ? shipyard_hour_chart($report, $h) : '<p class="empty">No report yet.</p>' ?>
</section>

<?php if ($slowest !== []): ?>
<section class="wide" id="slowest">
<h2>Slowest paths (p95 of %D)</h2>
<div class="scroll"><table>
<tr><th>path</th><th class="n">requests</th><th class="n">p95 ms</th><th class="n">max ms</th></tr>
<?php foreach ($slowest as [$path, $requests, $p95, $max]): ?>
<tr><td><?= $h($path) ?></td><td class="n"><?= $h($requests) ?></td><td class="n"><?= $h(round($p95 / 1000, 1)) ?></td><td class="n"><?= $h(round($max / 1000, 1)) ?></td></tr>
<?php endforeach; ?>
</table></div>
</section>
<?php endif; ?>
</main>
</body>
</html>
