<?php
// Signed S3 reads shared by the sample page and the dashboard.
declare(strict_types=1);

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

/** @return list<string>|null every key under $prefix (ListObjectsV2, all pages), null when the bucket cannot be listed */
function shipyard_s3_list(array $c, string $prefix): ?array
{
    $keys = [];
    $token = null;
    do {
        $query = ['list-type' => '2', 'prefix' => $prefix];
        if ($token !== null) {
            $query['continuation-token'] = $token;
        }
        $xml = shipyard_s3_get($c, '', $query);
        if ($xml === null) {
            return null;
        }
        $list = simplexml_load_string($xml);
        foreach ($list->Contents as $item) {
            $keys[] = (string) $item->Key;
        }
        $token = (string) $list->IsTruncated === 'true' ? (string) $list->NextContinuationToken : null;
    } while ($token !== null);
    return $keys;
}
