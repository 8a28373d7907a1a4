"""Audit a results folder that lives in an S3 bucket (``s3://BUCKET/RUN/results``).

The audit re-hashes every byte of every artifact, so it reads the whole tree
anyway: the run's objects are copied into a temporary folder laid out like the
bucket (``<tmp>/results/...``) and audited there with the local code, then the
copy is removed (it needs as much free disk as the run's results). Paths in provenance records are logical
(``results/...``, see :mod:`neurodissect.storage`), so they resolve in the copy
exactly as in a local run.

Credentials and endpoint come from boto3's usual sources: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or ``~/.aws``), and ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` for an S3-compatible server (MinIO, Ceph, ...), unless an
endpoint is passed explicitly (``neurodissect audit --endpoint-url``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..errors import InputError

SCHEME = "s3://"
_WORKERS = 8


def is_remote(location: str | os.PathLike) -> bool:
    return os.fspath(location).startswith(SCHEME)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` → (``bucket``, ``a/b``); a URL without a key is an error."""
    parsed = urlparse(url)
    key = parsed.path.strip("/")
    if not parsed.netloc or not key:
        raise InputError(
            f"{url}: expected s3://BUCKET/PREFIX/results (the run's results folder in a bucket)"
        )
    return parsed.netloc, key


def s3_client(endpoint_url: str | None = None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None)


def download_prefix(url: str, dest: Path, endpoint_url: str | None = None) -> int:
    """Copy every object under ``url`` into ``dest`` (same relative layout); returns the
    number of objects. One clear InputError when the bucket cannot be read or is empty."""
    import botocore.exceptions

    bucket, key = split_url(url)
    client = s3_client(endpoint_url)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise InputError(f"{url}: cannot list the bucket ({exc})") from None
    keys = [k for k in keys if not k.endswith("/")]
    if not keys:
        raise InputError(f"{url}: no objects under this prefix — is it the run's results/?")

    def fetch(k: str) -> None:
        target = dest / PurePosixPath(k[len(key) + 1 :])
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, k, os.fspath(target))

    with ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(fetch, keys))
    return len(keys)


@contextlib.contextmanager
def local_results(location: str | os.PathLike, endpoint_url: str | None = None) -> Iterator[Path]:
    """The results folder as a local path: itself, or a temporary copy of an s3:// URL.

    The copy holds the run's whole prefix (the URL's parent: ``s3://B/RUN/results`` →
    ``RUN/``), so inputs recorded outside results/ (files the run read from the bucket,
    e.g. a concept list) resolve as in the run's working directory."""
    if not is_remote(location):
        yield Path(location)
        return
    url = os.fspath(location).rstrip("/")
    bucket, key = split_url(url)
    run, _, name = key.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="neurodissect-audit-") as tmp:
        if not run:  # s3://bucket/results: the run is the bucket itself
            download_prefix(url, Path(tmp) / name, endpoint_url)
        else:
            download_prefix(f"{SCHEME}{bucket}/{run}", Path(tmp), endpoint_url)
            if not (Path(tmp) / name).is_dir():
                raise InputError(f"{url}: no objects under this prefix — is it the run's results/?")
        yield Path(tmp) / name
