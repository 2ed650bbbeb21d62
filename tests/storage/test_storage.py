"""Object stores: the same behaviour on file:// and on a real S3 server."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stepflow.errors import ConfigurationError, StorageError
from stepflow.storage import (
    InvalidKey,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    open_store,
)
from stepflow.storage.file import FileStore
from stepflow.storage.s3 import S3Store


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading and writing ---------------------------------------------------------------------

def test_put_get_head_round_trip_records_sha256(store):
    data = b"payload \x00\xff bytes"
    written = store.put_bytes("churn/train/ts/function/payload.pkl", data)
    assert written.key == "churn/train/ts/function/payload.pkl"
    assert (written.size, written.sha256) == (len(data), _sha(data))
    assert store.get_bytes("churn/train/ts/function/payload.pkl") == data
    info = store.head("churn/train/ts/function/payload.pkl")
    assert info == ObjectInfo(written.key, len(data), _sha(data), written.etag)
    assert info.etag


def test_missing_objects(store):
    assert store.head("nope/missing.json") is None
    with pytest.raises(NotFound, match="No object at") as info:
        store.get_bytes("nope/missing.json")
    assert info.value.reason == "ObjectNotFound"
    assert isinstance(info.value, StorageError)


def test_a_folder_is_not_an_object(store):
    store.put_bytes("a/b/c.txt", b"x")
    assert store.head("a/b") is None
    with pytest.raises(NotFound):
        store.get_bytes("a/b")


def test_last_writer_wins(store):
    store.put_bytes("k.txt", b"one")
    second = store.put_bytes("k.txt", b"two")
    assert store.get_bytes("k.txt") == b"two"
    assert store.head("k.txt").sha256 == _sha(b"two") == second.sha256


def test_conditional_create_never_overwrites(store):
    store.put_bytes("lock.json", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed, match="already exists") as info:
        store.put_bytes("lock.json", b"second", if_none_match=True)
    assert info.value.reason == "PreconditionFailed"
    assert store.get_bytes("lock.json") == b"first"


def test_conditional_create_race_has_exactly_one_winner(store):
    barrier = threading.Barrier(8)

    def attempt(i: int) -> int | None:
        barrier.wait(timeout=30)
        try:
            store.put_bytes("exec/claim.json", f"writer {i}".encode(), if_none_match=True)
            return i
        except PreconditionFailed:
            return None

    with ThreadPoolExecutor(8) as pool:
        winners = [i for i in pool.map(attempt, range(8)) if i is not None]
    assert len(winners) == 1
    assert store.get_bytes("exec/claim.json") == f"writer {winners[0]}".encode()


def test_delete_is_idempotent(store):
    store.put_bytes("d/x.bin", b"x")
    store.delete("d/x.bin")
    assert store.head("d/x.bin") is None
    store.delete("d/x.bin")
    store.delete("never/existed")


@pytest.mark.parametrize("size", [1234, 17 * 1024 * 1024], ids=["small", "multipart"])
def test_put_file(store, tmp_path, size):
    source = tmp_path / "workspace.zip"
    data = os.urandom(size)
    source.write_bytes(data)
    written = store.put_file("p/sm_rf_user_ws/ts/workspace.zip", source)
    assert (written.size, written.sha256) == (size, _sha(data))
    assert store.head("p/sm_rf_user_ws/ts/workspace.zip").sha256 == _sha(data)
    assert store.get_bytes("p/sm_rf_user_ws/ts/workspace.zip") == data


# --- listing ---------------------------------------------------------------------------------

def test_list_is_a_string_prefix_in_key_order(store):
    for key in ["a/b/2", "a/b/1", "a/bc", "b/x", "a/b/sub/3"]:
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("a/b")] == ["a/b/1", "a/b/2", "a/b/sub/3", "a/bc"]
    assert [o.key for o in store.list("a/b/")] == ["a/b/1", "a/b/2", "a/b/sub/3"]
    assert [o.key for o in store.list()] == ["a/b/1", "a/b/2", "a/b/sub/3", "a/bc", "b/x"]
    assert list(store.list("zzz/")) == []
    (first,) = [o for o in store.list("a/bc")]
    assert (first.size, first.sha256) == (4, None)


@pytest.mark.slow
def test_list_pages_past_one_thousand_objects(store):
    keys = [f"many/{i:05d}.json" for i in range(1105)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_bytes(k, b"{}"), keys))
    assert [o.key for o in store.list("many/")] == keys


# --- keys and URIs ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/.", "a\\b", "a\x00b"])
def test_keys_that_could_escape_the_root_are_refused(store, key):
    with pytest.raises(InvalidKey, match="Invalid object key"):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        store.get_bytes(key)


def test_uri_of_a_key(store, tmp_path):
    uri = store.uri("churn/.stepflow/index.json")
    if isinstance(store, FileStore):
        assert uri == (tmp_path / "store" / "churn" / ".stepflow" / "index.json").as_uri()
    else:
        assert uri == f"{store.root_uri}/churn/.stepflow/index.json"
        assert uri.startswith("s3://") and uri.count("/stepflow/churn/") == 1


# --- file:// specifics -----------------------------------------------------------------------

def test_file_store_leaves_no_temporary_files_and_hides_stray_ones(tmp_path):
    store = open_store(str(tmp_path / "root"))
    store.put_bytes("p/a.json", b"1")
    store.put_bytes("p/a.json", b"2")
    with pytest.raises(PreconditionFailed):
        store.put_bytes("p/a.json", b"3", if_none_match=True)
    assert sorted(os.listdir(tmp_path / "root" / "p")) == ["a.json"]
    # What a crash in the middle of a write leaves behind is never listed as an object.
    (tmp_path / "root" / "p" / ".b.json.stepflow-tmp.0123456789abcdef").write_bytes(b"half")
    assert [o.key for o in store.list("p/")] == ["p/a.json"]


def test_file_store_error_says_what_failed(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    (root / "p").write_text("a file where a folder is needed")
    store = open_store(root.as_uri())
    with pytest.raises(StorageError, match=r"Could not write file://.*p/x\.json"):
        store.put_bytes("p/x.json", b"x")


# --- opening stores --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "has no bucket"),
        ("s3:///prefix", "has no bucket"),
        ("s3://Bad_Bucket/x", "not a valid bucket name"),
        ("s3://bucket/a//b", "empty path segment"),
        ("relative/path", "is a relative path"),
        ("file:relative", "is a relative path"),
        ("file://otherhost/data", "names host 'otherhost'"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("", "is empty"),
    ],
)
def test_invalid_root_uris_say_what_and_how(uri, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        open_store(uri)
    assert "s3://<bucket>/<prefix> or file:///absolute/path" in str(info.value)
    assert info.value.reason == "InvalidConfiguration"


@pytest.mark.parametrize(
    ("uri", "root_uri"),
    [
        ("s3://bucket/a/b/", "s3://bucket/a/b"),
        ("s3://bucket", "s3://bucket"),
        ("file:///srv/stepflow/", "file:///srv/stepflow"),
        ("file://localhost/srv/x", "file:///srv/x"),
        ("/srv/with%20space", "file:///srv/with%2520space"),
        ("file:///srv/with%20space", "file:///srv/with%20space"),
    ],
)
def test_valid_root_uris(uri, root_uri):
    assert open_store(uri).root_uri == root_uri


def test_s3_endpoint_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("STEPFLOW_S3_ENDPOINT_URL", "http://from-env:9000")
    assert open_store("s3://bucket/p").endpoint_url == "http://from-env:9000"
    assert open_store("s3://bucket/p", "http://arg:1").endpoint_url == "http://arg:1"
    monkeypatch.delenv("STEPFLOW_S3_ENDPOINT_URL")
    assert open_store("s3://bucket/p").endpoint_url is None


def test_s3_store_from_environment_only(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(s3.root_uri)
    store.put_bytes("x.txt", b"hello")
    body = s3.client().get_object(Bucket=s3.bucket, Key="stepflow/x.txt")
    assert body["Body"].read() == b"hello"
    assert body["Metadata"] == {"sha256": _sha(b"hello")}


def test_s3_client_is_shared_between_stores_and_threads(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    a = open_store(s3.root_uri, s3.endpoint_url)
    b = open_store(f"s3://{s3.bucket}/other", s3.endpoint_url)
    assert isinstance(a, S3Store) and a.client is b.client
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: b.put_bytes(f"t/{i}", b"x"), range(64)))
    assert len(list(b.list("t/"))) == 64


def test_s3_missing_bucket(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(f"s3://{s3.bucket}-missing/p", s3.endpoint_url)
    with pytest.raises(StorageError, match="does not exist") as info:
        store.put_bytes("x", b"x")
    assert info.value.reason == "BucketNotFound"


def test_s3_wrong_credentials_never_echo_the_secret(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-1234")
    store = open_store(s3.root_uri, s3.endpoint_url)
    with pytest.raises(StorageError) as info:
        store.get_bytes("x")
    assert info.value.reason == "AccessDenied"
    assert "wrong-secret-value-1234" not in str(info.value)
    assert "Check the AWS credentials" in str(info.value)


def test_s3_unreachable_endpoint(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = open_store("s3://bucket/p", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match=f"127.0.0.1:{port}") as info:
        store.head("x")
    assert info.value.reason == "EndpointUnreachable"


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credentials anywhere boto3 looks: env, files, instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_s3_no_credentials(no_aws_credentials):
    store = open_store("s3://bucket/p", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match="no AWS credentials found") as info:
        store.get_bytes("x")
    assert info.value.reason == "NoCredentials"


def test_paths_are_not_shared_between_root_prefixes(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    a = open_store(f"s3://{s3.bucket}/team-a", s3.endpoint_url)
    b = open_store(f"s3://{s3.bucket}/team-a-2", s3.endpoint_url)
    a.put_bytes("x", b"a")
    b.put_bytes("x", b"b")
    assert [o.key for o in a.list()] == ["x"]
    assert a.get_bytes("x") == b"a"


def test_store_repr_names_the_root_only(tmp_path):
    assert repr(open_store(str(tmp_path))) == f"FileStore({Path(tmp_path).as_uri()!r})"


# --- bulk upload (put_many) ------------------------------------------------------------------

ODD_KEYS = ["bulk/with space/a b.pkl", "bulk/ünï/çødé €.json", "bulk/plus+sign/a+b=c&d.pkl",
            "bulk/tilde~/%41 not-an-escape", "bulk/q?mark#hash/x;y,z.bin"]


def _boto3_put_paths(store: S3Store) -> list[str]:
    """Paths of the PutObject requests boto3 sends from now on (the bulk path bypasses boto3)."""
    from urllib.parse import unquote, urlsplit

    sent: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(unquote(urlsplit(request.url).path))
    )
    return sent


def test_put_many_writes_bytes_and_files_with_their_sha256(store, tmp_path):
    sources: list[tuple[str, bytes | Path | str]] = []
    expected: dict[str, bytes] = {}
    for i, key in enumerate(ODD_KEYS * 4):
        key = f"{key}.{i}"
        data = f"object {i} ".encode() * (i + 1)
        if i % 2:
            path = tmp_path / f"src-{i}.bin"
            path.write_bytes(data)
            sources.append((key, path if i % 4 == 1 else str(path)))
        else:
            sources.append((key, data))
        expected[key] = data
    boto3_puts = _boto3_put_paths(store) if isinstance(store, S3Store) else []

    written = store.put_many(sources, workers=4)

    assert [(w.key, w.size, w.sha256) for w in written] == \
        [(k, len(expected[k]), _sha(expected[k])) for k, _ in sources]
    for key, data in expected.items():
        assert store.get_bytes(key) == data
        assert store.head(key).sha256 == _sha(data)
    assert sorted(o.key for o in store.list("bulk/")) == sorted(expected, key=str.encode)
    assert [p for p in boto3_puts if "/bulk/" in p] == []  # none of them went through boto3


def test_put_many_objects_are_what_boto3_writes(s3, monkeypatch):
    """Same key, body and x-amz-meta-sha256 as put_bytes, read back by an independent client."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(s3.root_uri, s3.endpoint_url)
    (info,) = store.put_many([(ODD_KEYS[2], b"plus")])
    got = s3.client().get_object(Bucket=s3.bucket, Key=f"stepflow/{ODD_KEYS[2]}")
    assert got["Body"].read() == b"plus"
    assert got["Metadata"] == {"sha256": _sha(b"plus")}
    assert got["ETag"].strip('"') == info.etag


def test_put_many_of_nothing_makes_no_request(store):
    assert store.put_many([]) == []
    assert list(store.list()) == []


def test_put_many_refuses_bad_keys(store):
    with pytest.raises(InvalidKey):
        store.put_many([("ok/a", b"1"), ("a/../b", b"2")], workers=1)


def test_put_many_sends_files_over_the_single_put_limit_as_multipart(s3, monkeypatch, tmp_path):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(s3.root_uri, s3.endpoint_url)
    big = tmp_path / "workspace.zip"
    data = os.urandom(17 * 1024 * 1024)
    big.write_bytes(data)
    written = store.put_many([("p/small", b"s"), ("p/big.zip", big)])
    assert [(w.key, w.size, w.sha256) for w in written] == \
        [("p/small", 1, _sha(b"s")), ("p/big.zip", len(data), _sha(data))]
    assert "-" in store.head("p/big.zip").etag  # a multipart ETag: <md5 of md5s>-<parts>
    assert store.get_bytes("p/big.zip") == data


def test_put_many_missing_bucket(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(f"s3://{s3.bucket}-missing/p", s3.endpoint_url)
    with pytest.raises(StorageError, match="does not exist") as info:
        store.put_many([(f"k{i}", b"x") for i in range(20)])
    assert info.value.reason == "BucketNotFound"
    assert f"s3://{s3.bucket}-missing/p/k" in str(info.value)


def test_put_many_wrong_secret_is_access_denied_and_never_echoed(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-5678")
    store = open_store(s3.root_uri, s3.endpoint_url)
    with pytest.raises(StorageError) as info:
        store.put_many([(f"k{i}", b"x") for i in range(20)])
    assert info.value.reason == "AccessDenied"
    assert "Check the AWS credentials" in str(info.value)
    chain, seen = info.value, []
    while chain is not None:
        seen.append(repr(chain) + str(chain))
        chain = chain.__cause__ or chain.__context__
    assert not any("wrong-secret-value-5678" in text for text in seen)
    assert s3.client().list_objects_v2(Bucket=s3.bucket).get("KeyCount") == 0


def test_put_many_unreachable_endpoint_fails_within_bounded_time(monkeypatch):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = open_store("s3://bucket/p", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"127.0.0.1:{port}") as info:
        store.put_many([(f"k{i}", b"x") for i in range(8)], workers=4)
    assert info.value.reason == "EndpointUnreachable"
    assert "s3://bucket/p/k" in str(info.value)
    assert time.monotonic() - started < 10  # 5 attempts, backoff capped, refused at once


def test_put_many_without_credentials(no_aws_credentials):
    store = open_store("s3://bucket/p", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match="no AWS credentials found") as info:
        store.put_many([("x", b"x")])
    assert info.value.reason == "NoCredentials"


class FlakyProxy:
    """An HTTP server in front of the real S3 server that misbehaves as told, then forwards.

    ``plan(n, method, path)`` says what to do with the n-th request (from 0): ``"forward"``,
    ``"503"`` (S3's SlowDown), ``"drop"`` (close the connection without answering) or
    ``"301"`` (a PermanentRedirect, what S3 says when the bucket is in another region).
    Requests are forwarded with their Host header, so their SigV4 signatures stay valid.
    """

    def __init__(self, upstream: str, plan) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.requests: list[tuple[str, str, str, str]] = []  # (method, path, action, user agent)
        lock = threading.Lock()
        proxy = self
        target = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    action = plan(len(proxy.requests), self.command, self.path)
                    proxy.requests.append((self.command, self.path, action, self.headers.get("User-Agent", "")))
                if action == "drop":
                    self.close_connection = True
                    return
                if action == "503":
                    self._answer(503, b"<?xml version='1.0'?><Error><Code>SlowDown</Code>"
                                      b"<Message>Please reduce your request rate.</Message></Error>")
                    return
                if action == "301":
                    self._answer(301, b"<Error><Code>PermanentRedirect</Code><Message>Use the "
                                      b"bucket's region.</Message></Error>", {"x-amz-bucket-region": "us-east-1"})
                    return
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    upstream_conn.request(self.command, self.path, body=body or None,
                                          headers=dict(self.headers.items()))
                    response = upstream_conn.getresponse()
                    data = response.read()
                finally:
                    upstream_conn.close()
                skip = {"content-length", "transfer-encoding", "connection"}
                self._answer(response.status, data,
                             {k: v for k, v in response.getheaders() if k.lower() not in skip})

            do_PUT = do_GET = do_HEAD = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def actions(self, path_end: str) -> list[str]:
        """What was done with each request whose path ends with ``path_end``, in order."""
        return [action for _, path, action, _ in self.requests if path.endswith(path_end)]


def _proxied_store(s3, monkeypatch, proxy: FlakyProxy) -> S3Store:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return open_store(s3.root_uri, proxy.endpoint_url)


def test_put_many_retries_slow_down_and_dropped_connections(s3, monkeypatch):
    # Each object's first two attempts fail: a 503 SlowDown, then a connection closed unanswered.
    tries: dict[str, int] = {}

    def plan(n: int, method: str, path: str) -> str:
        tries[path] = tries.get(path, 0) + 1
        return {1: "503", 2: "drop"}.get(tries[path], "forward")

    with FlakyProxy(s3.endpoint_url, plan) as proxy:
        store = _proxied_store(s3, monkeypatch, proxy)
        written = store.put_many([(f"r/{i}", f"v{i}".encode()) for i in range(12)], workers=4)
    assert [w.sha256 for w in written] == [_sha(f"v{i}".encode()) for i in range(12)]
    for i in range(12):
        assert proxy.actions(f"/stepflow/r/{i}") == ["503", "drop", "forward"]
    direct = open_store(s3.root_uri, s3.endpoint_url)
    assert [direct.get_bytes(f"r/{i}") for i in range(12)] == [f"v{i}".encode() for i in range(12)]


def test_put_many_gives_up_after_bounded_retries(s3, monkeypatch):
    import time

    with FlakyProxy(s3.endpoint_url, lambda n, method, path: "503") as proxy:
        store = _proxied_store(s3, monkeypatch, proxy)
        started = time.monotonic()
        with pytest.raises(StorageError, match="SlowDown: Please reduce your request rate") as info:
            store.put_many([("only/one", b"x")])
    assert time.monotonic() - started < 10
    assert proxy.actions("/stepflow/only/one") == ["503"] * 5
    assert f"{s3.root_uri}/only/one" in str(info.value)


def test_put_many_leaves_a_region_redirect_to_boto3(s3, monkeypatch):
    seen: set[str] = set()

    def plan(n: int, method: str, path: str) -> str:
        if path.endswith("/moved") and path not in seen:
            seen.add(path)
            return "301"
        return "forward"

    with FlakyProxy(s3.endpoint_url, plan) as proxy:
        store = _proxied_store(s3, monkeypatch, proxy)
        written = store.put_many([("a/stays", b"1"), ("a/moved", b"2")], workers=1)
    assert [w.sha256 for w in written] == [_sha(b"1"), _sha(b"2")]
    moved = [(action, agent) for _, path, action, agent in proxy.requests if path.endswith("/moved")]
    assert [action for action, _ in moved] == ["301", "forward"]
    assert "Boto3" not in moved[0][1] and "Boto3" in moved[1][1]  # the retry is boto3's own
    assert open_store(s3.root_uri, s3.endpoint_url).get_bytes("a/moved") == b"2"


def test_put_many_in_a_forked_child_opens_its_own_connections(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(s3.root_uri, s3.endpoint_url)
    store.put_many([("fork/parent", b"p")])
    parent_connection = store.connection
    pid = os.fork()
    if pid == 0:  # the child: same store object, fresh sockets, or the two processes interleave
        try:
            store.put_many([(f"fork/child-{i}", b"c") for i in range(8)], workers=4)
            os._exit(0 if store.connection is not parent_connection else 3)
        except BaseException:
            os._exit(4)
    store.put_many([(f"fork/parent-{i}", b"p") for i in range(8)], workers=4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.connection is parent_connection
    assert len(list(store.list("fork/"))) == 17
