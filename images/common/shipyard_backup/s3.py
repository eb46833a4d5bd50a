"""The bucket, through boto3 (Debian's python3-boto3): streamed puts with a checksum, checked gets.

Errors are turned into StepError naming the setting that is most likely wrong,
so `shipyard-backup check` can say "s3_secret_access_key_file" rather than
quote a stack trace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .config import Settings, env_name
from .runner import StepError

PART_SIZE = 16 * 1024 * 1024
# How long one request may hang: an unreachable endpoint must fail a check
# within the check interval, not after botocore's default minute.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60

# S3 error code -> the setting to blame.
BLAME = {
    "InvalidAccessKeyId": "s3_access_key_id_file",
    "SignatureDoesNotMatch": "s3_secret_access_key_file",
    "AccessDenied": "s3_access_key_id_file",
    "NoSuchBucket": "s3_bucket",
    "AuthorizationHeaderMalformed": "s3_region",
    "PermanentRedirect": "s3_region",
}


def blame(error: Exception) -> tuple[str, str]:
    """(setting, message) for an exception from boto3."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        SSLError,
    )

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or code
        if code in ("404", "NotFound"):
            code, message = "NoSuchBucket", "the bucket does not exist"
        if code in ("403", "Forbidden"):
            code, message = "AccessDenied", "access denied"
        return BLAME.get(code, "s3_endpoint"), f"{code}: {message}"
    if isinstance(error, SSLError):
        return "s3_ca_file", f"TLS: {error}"
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return "s3_endpoint", str(error)
    return "s3_endpoint", f"{type(error).__name__}: {error}"


def describe(error: Exception) -> str:
    setting, message = blame(error)
    return f"{setting} ({env_name(setting)}): {message}"


class HashingReader:
    """A file object that hashes and counts what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


@dataclass
class Stored:
    key: str
    size: int
    sha256: str


class Bucket:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.name = settings.bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.secret("s3_access_key_id_file"),
            aws_secret_access_key=settings.secret("s3_secret_access_key_file"),
            verify=settings.ca_path or True,
            config=Config(
                s3={"addressing_style": "path" if settings.uri_style == "path" else "virtual"},
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"max_attempts": 3, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def key(self, *parts: str) -> str:
        return "/".join([self.settings.prefix, *parts])

    def _call(self, what: str, function: Callable[..., Any], **kwargs: object) -> Any:  # noqa: ANN401 (boto3 answers are untyped dicts)
        try:
            return function(**kwargs)
        except Exception as exc:
            raise StepError(f"{what}: {describe(exc)}") from exc

    def probe(self) -> None:
        self._call(
            "S3 bucket " + self.name,
            self.client.list_objects_v2,
            Bucket=self.name,
            Prefix=self.key(""),
            MaxKeys=1,
        )

    def put_stream(self, key: str, stream: IO[bytes]) -> Stored:
        from boto3.s3.transfer import TransferConfig

        reader = HashingReader(stream)
        config = TransferConfig(
            multipart_chunksize=PART_SIZE,
            multipart_threshold=PART_SIZE,
            max_concurrency=2,
            use_threads=True,
        )
        self._call(
            f"upload of {key}",
            self.client.upload_fileobj,
            Fileobj=reader,
            Bucket=self.name,
            Key=key,
            Config=config,
        )
        return Stored(key, reader.size, reader.sha256.hexdigest())

    def put_json(self, key: str, document: object) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self._call(
            f"upload of {key}",
            self.client.put_object,
            Bucket=self.name,
            Key=key,
            Body=body,
            ContentType="application/json",
        )

    def get_json(self, key: str) -> dict[str, Any]:
        response = self._call(
            f"download of {key}", self.client.get_object, Bucket=self.name, Key=key
        )
        return json.loads(response["Body"].read())

    def chunks(self, key: str, expect: Stored | None = None) -> Iterator[bytes]:
        """The object's bytes; with expect, a wrong size or checksum raises at the end."""
        response = self._call(
            f"download of {key}", self.client.get_object, Bucket=self.name, Key=key
        )
        digest, size = hashlib.sha256(), 0
        for chunk in response["Body"].iter_chunks(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        if expect is not None and (size != expect.size or digest.hexdigest() != expect.sha256):
            raise StepError(
                f"{key} is corrupt: {size} bytes with sha256 {digest.hexdigest()[:16]}..., "
                f"the manifest says {expect.size} bytes with sha256 {expect.sha256[:16]}..."
            )

    def list(self, *parts: str) -> list[dict[str, Any]]:
        prefix = self.key(*parts)
        paginator = self.client.get_paginator("list_objects_v2")
        out: list[dict[str, Any]] = []
        try:
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                out += page.get("Contents", [])
        except Exception as exc:
            raise StepError(f"listing {prefix}: {describe(exc)}") from exc
        return out

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "delete",
                self.client.delete_objects,
                Bucket=self.name,
                Delete={"Objects": batch, "Quiet": True},
            )

    def abort_stale_uploads(self) -> None:
        """Multipart uploads a killed backup left open: invisible, but billed."""
        try:
            uploads = self.client.list_multipart_uploads(Bucket=self.name, Prefix=self.key("")).get(
                "Uploads", []
            )
            for upload in uploads:
                self.client.abort_multipart_upload(
                    Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        except Exception as exc:
            raise StepError(f"cleaning up multipart uploads: {describe(exc)}") from exc
