"""The local S3 server (versitygw, posix backend) behaves as S3 does for what stepflow uses."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def _code(err: ClientError) -> tuple[int, str]:
    return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"]


def test_fresh_bucket_and_root_uri(s3):
    c = s3.client()
    assert c.list_objects_v2(Bucket=s3.bucket)["KeyCount"] == 0
    assert s3.root_uri == f"s3://{s3.bucket}/stepflow"
    assert s3.bucket in {b["Name"] for b in c.list_buckets()["Buckets"]}


def test_put_get_head(s3):
    c = s3.client()
    body = b"payload \x00\x01\xff" * 1000
    put = c.put_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl", Body=body,
                       ContentType="application/octet-stream", Metadata={"sha256": "abc"})
    assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest()

    got = c.get_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl")
    assert got["Body"].read() == body
    head = c.head_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/octet-stream"
    assert head["Metadata"] == {"sha256": "abc"}
    assert head["ETag"] == put["ETag"]

    ranged = c.get_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl",
                          Range="bytes=10-19")
    assert ranged["Body"].read() == body[10:20]

    with pytest.raises(ClientError) as err:
        c.head_object(Bucket=s3.bucket, Key="stepflow/missing")
    assert _code(err.value)[0] == 404
    with pytest.raises(ClientError) as err:
        c.get_object(Bucket=s3.bucket, Key="stepflow/missing")
    assert _code(err.value) == (404, "NoSuchKey")

    c.delete_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl")
    with pytest.raises(ClientError):
        c.head_object(Bucket=s3.bucket, Key="stepflow/p/step/function/payload.pkl")


def test_list_paginates_over_more_than_1000_keys(s3):
    c = s3.client()
    keys = [f"stepflow/many/{i:05d}.json" for i in range(1234)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: c.put_object(Bucket=s3.bucket, Key=k, Body=k.encode()), keys))
    c.put_object(Bucket=s3.bucket, Key="stepflow/other/x", Body=b"x")

    first = c.list_objects_v2(Bucket=s3.bucket, Prefix="stepflow/many/")
    assert first["IsTruncated"] is True
    assert first["KeyCount"] == 1000
    assert "NextContinuationToken" in first

    pages = list(c.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket,
                                                              Prefix="stepflow/many/"))
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert len(pages) == 2
    assert listed == keys  # complete, no duplicates, lexicographic order

    small = list(c.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix="stepflow/many/", PaginationConfig={"PageSize": 500}))
    assert [len(p["Contents"]) for p in small] == [500, 500, 234]

    tops = c.list_objects_v2(Bucket=s3.bucket, Prefix="stepflow/", Delimiter="/")
    assert sorted(p["Prefix"] for p in tops["CommonPrefixes"]) == [
        "stepflow/many/", "stepflow/other/"]


def test_multipart_upload_20_mib(s3):
    c = s3.client()
    data = os.urandom(20 * MiB)
    parts_data = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    up = c.create_multipart_upload(Bucket=s3.bucket, Key="stepflow/big.bin")
    parts = []
    for n, chunk in enumerate(parts_data, start=1):
        r = c.upload_part(Bucket=s3.bucket, Key="stepflow/big.bin", UploadId=up["UploadId"],
                          PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    listed = c.list_parts(Bucket=s3.bucket, Key="stepflow/big.bin", UploadId=up["UploadId"])
    assert [p["Size"] for p in listed["Parts"]] == [5 * MiB] * 4
    done = c.complete_multipart_upload(Bucket=s3.bucket, Key="stepflow/big.bin",
                                       UploadId=up["UploadId"],
                                       MultipartUpload={"Parts": parts})
    # S3's multipart ETag: md5 of the concatenated part md5s, dash, part count
    md5s = b"".join(hashlib.md5(p).digest() for p in parts_data)
    assert done["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-4"

    head = c.head_object(Bucket=s3.bucket, Key="stepflow/big.bin")
    assert head["ContentLength"] == 20 * MiB
    body = c.get_object(Bucket=s3.bucket, Key="stepflow/big.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_managed_transfer_uses_multipart(s3, tmp_path):
    from boto3.s3.transfer import TransferConfig

    c = s3.client()
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(20 * MiB))
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    c.upload_file(str(src), s3.bucket, "stepflow/managed.bin", Config=cfg)
    assert c.head_object(Bucket=s3.bucket, Key="stepflow/managed.bin")["ETag"].endswith('-3"')
    dst = tmp_path / "dst.bin"
    c.download_file(s3.bucket, "stepflow/managed.bin", str(dst), Config=cfg)
    assert dst.read_bytes() == src.read_bytes()


def test_conditional_put_fails_when_object_exists(s3):
    c = s3.client()
    c.put_object(Bucket=s3.bucket, Key="stepflow/once", Body=b"first")
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=s3.bucket, Key="stepflow/once", Body=b"second", IfNoneMatch="*")
    assert _code(err.value) == (412, "PreconditionFailed")
    assert c.get_object(Bucket=s3.bucket, Key="stepflow/once")["Body"].read() == b"first"

    c.put_object(Bucket=s3.bucket, Key="stepflow/new", Body=b"created", IfNoneMatch="*")
    assert c.get_object(Bucket=s3.bucket, Key="stepflow/new")["Body"].read() == b"created"


def test_conditional_put_race_has_one_winner(s3):
    c = s3.client()
    barrier = threading.Barrier(8)

    def attempt(i: int) -> str:
        barrier.wait(10)
        try:
            c.put_object(Bucket=s3.bucket, Key="stepflow/race", Body=f"writer {i}".encode(),
                         IfNoneMatch="*")
            return "won"
        except ClientError as err:
            status, code = _code(err)
            assert status in (409, 412), (status, code)
            return "lost"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count("won") == 1, results
    winner = results.index("won")
    assert c.get_object(Bucket=s3.bucket, Key="stepflow/race")["Body"].read() == \
        f"writer {winner}".encode()


def test_env_alone_reaches_the_server_from_a_child_process(s3):
    s3.client().put_object(Bucket=s3.bucket, Key="stepflow/hello", Body=b"from parent")
    code = ("import boto3, sys; c = boto3.client('s3'); "
            "sys.stdout.write(c.get_object(Bucket=sys.argv[1], Key='stepflow/hello')"
            "['Body'].read().decode())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3.env())
    out = subprocess.run([sys.executable, "-c", code, s3.bucket], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "from parent"
    assert env["STEPFLOW_S3_ENDPOINT_URL"] == s3.endpoint_url


def test_wrong_credentials_are_rejected(s3):
    from tests.testenv.s3 import boto3_client

    bad = boto3_client(s3.endpoint_url, s3.access_key, "not-the-secret", s3.region)
    with pytest.raises(ClientError) as err:
        bad.list_objects_v2(Bucket=s3.bucket)
    assert _code(err.value)[0] == 403
