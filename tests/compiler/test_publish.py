"""Publishing bundles: upload only what changed, and in an order a crash cannot break."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stepflow import layout
from stepflow.compiler.publish import PublishReport, publish, read_index
from stepflow.errors import IntegrityError, StorageError, ValidationError
from stepflow.storage import ObjectStore, open_store


def index_key(pipeline: str) -> str:
    return layout.in_pipeline(pipeline, layout.index_key())


def definition_key(pipeline: str, digest: str) -> str:
    return layout.in_pipeline(pipeline, layout.definition_key(digest))


# A stand-in with the Bundle contract of stepflow.compiler.bundle: a folder with
# definition.json and files/<key>, as the compiler writes it.
@dataclass(frozen=True)
class StandInFile:
    key: str
    sha256: str
    size: int


@dataclass
class StandInBundle:
    folder: Path
    pipeline_name: str
    definition_bytes: bytes
    digest: str
    files: list[StandInFile] = field(default_factory=list)

    def path_of(self, key: str) -> Path:
        return self.folder / "files" / key


def make_bundle(folder: Path, pipeline: str, contents: dict[str, bytes]) -> StandInBundle:
    files = []
    for key, data in sorted(contents.items()):
        path = folder / "files" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(StandInFile(key, hashlib.sha256(data).hexdigest(), len(data)))
    definition = json.dumps({"Version": "2020-12-01", "Files": {f.key: f.sha256 for f in files}}).encode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "definition.json").write_bytes(definition)
    digest = "sha256:" + hashlib.sha256(definition).hexdigest()
    return StandInBundle(folder, pipeline, definition, digest, files)


def step_files(pipeline: str, steps: int, ts: str = "2025-01-01-00-00-00-000") -> dict[str, bytes]:
    contents = {f"{pipeline}/sagemaker_remote_function_bootstrap/job_driver.sh": b"#!/bin/bash\n"}
    for i in range(steps):
        for part in ("function", "arguments"):
            base = f"{pipeline}/step-{i}/{ts}/{part}"
            contents[f"{base}/payload.pkl"] = f"{part} payload of step {i}".encode() * 20
            contents[f"{base}/metadata.json"] = f'{{"step": {i}}}'.encode()
    return contents


class RecordingStore(ObjectStore):
    """Delegates to a real store, records the order of writes, and can fail the Nth upload."""

    def __init__(self, inner: ObjectStore, fail_on_put: int | None = None) -> None:
        self.inner = inner
        self.root_uri = inner.root_uri
        self.writes: list[str] = []
        self.reads: list[str] = []
        self.fail_on_put = fail_on_put
        self._lock = threading.Lock()

    def _record(self, key: str) -> None:
        with self._lock:
            self.writes.append(key)
            if self.fail_on_put is not None and len(self.writes) == self.fail_on_put:
                raise StorageError(f"injected failure writing {key}")

    def put_bytes(self, key, data, *, if_none_match=False):
        self._record(key)
        return self.inner.put_bytes(key, data, if_none_match=if_none_match)

    def put_file(self, key, path):
        self._record(key)
        return self.inner.put_file(key, path)

    def get_bytes(self, key):
        self.reads.append(key)
        return self.inner.get_bytes(key)

    def head(self, key):
        self.reads.append(key)
        return self.inner.head(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def delete(self, key):
        return self.inner.delete(key)

    def uri(self, key):
        return self.inner.uri(key)


def _all_keys(store: ObjectStore) -> set[str]:
    return {o.key for o in store.list()}


def test_first_publish_uploads_everything_in_the_layout(store, tmp_path):
    contents = step_files("churn", 5)
    bundle = make_bundle(tmp_path / "b1", "churn", contents)
    report = publish(bundle, store)
    assert report == PublishReport(
        uploaded_files=len(contents), uploaded_bytes=sum(map(len, contents.values())),
        skipped_files=0, skipped_bytes=0,
        definition_uri=store.uri(definition_key("churn", bundle.digest)),
        definition_written=True, index_written=True,
    )
    def_key = definition_key("churn", bundle.digest)
    assert _all_keys(store) == set(contents) | {def_key, index_key("churn")}
    for key, data in contents.items():
        assert store.get_bytes(key) == data
        assert store.head(key).sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(def_key) == bundle.definition_bytes
    assert def_key == f"churn/.stepflow/definitions/{bundle.digest[len('sha256:'):]}.json"
    index = read_index(store, "churn")
    assert index == {**{k: hashlib.sha256(v).hexdigest() for k, v in contents.items()},
                     def_key: bundle.digest[len("sha256:"):]}


def test_republishing_unchanged_content_uploads_nothing(store, tmp_path):
    contents = step_files("churn", 5)
    publish(make_bundle(tmp_path / "b1", "churn", contents), store)
    recording = RecordingStore(store)
    report = publish(make_bundle(tmp_path / "b2", "churn", contents), recording)
    assert (report.uploaded_files, report.uploaded_bytes) == (0, 0)
    assert (report.skipped_files, report.skipped_bytes) == (len(contents), sum(map(len, contents.values())))
    assert not report.definition_written and not report.index_written
    assert recording.writes == []
    assert recording.reads == [index_key("churn")]  # the one cheap request


def test_one_changed_file_is_the_only_upload(store, tmp_path):
    contents = step_files("churn", 5)
    publish(make_bundle(tmp_path / "b1", "churn", contents), store)
    changed_key = "churn/step-3/2025-01-01-00-00-00-000/arguments/payload.pkl"
    contents[changed_key] = b"new arguments"
    recording = RecordingStore(store)
    bundle = make_bundle(tmp_path / "b2", "churn", contents)
    report = publish(bundle, recording)
    assert (report.uploaded_files, report.uploaded_bytes) == (1, len(b"new arguments"))
    assert report.skipped_files == len(contents) - 1
    # the artifact, then its (new) definition, then the index
    assert recording.writes == [changed_key, definition_key("churn", bundle.digest), index_key("churn")]
    assert store.get_bytes(changed_key) == b"new arguments"
    assert read_index(store, "churn")[changed_key] == hashlib.sha256(b"new arguments").hexdigest()


def test_new_step_folder_keeps_the_old_one_in_the_index(store, tmp_path):
    old = step_files("churn", 2, ts="2025-01-01-00-00-00-000")
    first = make_bundle(tmp_path / "b1", "churn", old)
    publish(first, store)
    new = step_files("churn", 2, ts="2025-02-02-00-00-00-000")
    second = make_bundle(tmp_path / "b2", "churn", new)
    report = publish(second, store)
    assert report.uploaded_files == len(new) - 1  # the shared bootstrap script is skipped
    index = read_index(store, "churn")
    assert set(old) <= set(index) and set(new) <= set(index)
    assert definition_key("churn", first.digest) in index
    assert definition_key("churn", second.digest) in index


def test_artifacts_are_written_before_the_definition_and_the_index_last(store, tmp_path):
    contents = step_files("churn", 10)
    recording = RecordingStore(store)
    bundle = make_bundle(tmp_path / "b1", "churn", contents)
    publish(bundle, recording, workers=8)
    assert set(recording.writes[:-2]) == set(contents)
    assert recording.writes[-2:] == [definition_key("churn", bundle.digest), index_key("churn")]


@pytest.mark.parametrize("fail_on_put", [1, 7, 41, 42], ids=["first", "middle", "last-artifact", "definition"])
def test_a_crash_mid_publish_points_to_nothing_and_the_rerun_repairs_it(store, tmp_path, fail_on_put):
    contents = step_files("churn", 10)  # 41 artifacts, then the definition (42), then the index
    assert len(contents) == 41
    bundle = make_bundle(tmp_path / "b1", "churn", contents)
    with pytest.raises(StorageError, match="injected failure"):
        publish(bundle, RecordingStore(store, fail_on_put=fail_on_put), workers=1)
    assert store.head(index_key("churn")) is None
    if fail_on_put <= 41:
        assert store.head(definition_key("churn", bundle.digest)) is None
    assert read_index(store, "churn") == {}

    report = publish(bundle, store)
    assert report.uploaded_files == len(contents)  # re-uploads rather than trusting a partial state
    assert report.definition_written and report.index_written
    for key, data in contents.items():
        assert store.get_bytes(key) == data
    assert publish(bundle, store).uploaded_files == 0


def test_a_bundle_file_that_does_not_match_its_digest_is_refused(store, tmp_path):
    contents = step_files("churn", 2)
    bundle = make_bundle(tmp_path / "b1", "churn", contents)
    tampered = "churn/step-1/2025-01-01-00-00-00-000/function/payload.pkl"
    bundle.path_of(tampered).write_bytes(b"swapped after compiling")
    with pytest.raises(IntegrityError, match="changed after compiling"):
        publish(bundle, store, workers=1)
    assert store.head(definition_key("churn", bundle.digest)) is None
    assert store.head(index_key("churn")) is None


def test_a_definition_that_does_not_match_the_digest_is_refused(store, tmp_path):
    bundle = make_bundle(tmp_path / "b1", "churn", step_files("churn", 1))
    bundle.definition_bytes += b" "
    with pytest.raises(IntegrityError, match="definition hashes to"):
        publish(bundle, store)
    assert _all_keys(store) == set()


@pytest.mark.parametrize(
    "bad_key",
    ["other/step/ts/function/payload.pkl", "churn/.stepflow/index.json", "churn/../other/x", "churnx/y"],
)
def test_a_bundle_cannot_write_outside_its_pipeline(store, tmp_path, bad_key):
    contents = step_files("churn", 1)
    contents[bad_key] = b"{}"
    bundle = make_bundle(tmp_path / "b1", "churn", {k: v for k, v in contents.items() if ".." not in k})
    if ".." in bad_key:
        bundle.files.append(StandInFile(bad_key, hashlib.sha256(b"{}").hexdigest(), 2))
    with pytest.raises(ValidationError, match="Bundle file"):
        publish(bundle, store)
    assert _all_keys(store) == set()


@pytest.mark.parametrize("name", ["a/b", "", "..", ".stepflow"])
def test_pipeline_names_that_are_not_one_folder_are_refused(store, tmp_path, name):
    bundle = make_bundle(tmp_path / "b1", "x", {})
    bundle.pipeline_name = name
    with pytest.raises(ValidationError, match="cannot be a folder"):
        publish(bundle, store)


def test_an_unreadable_index_means_upload_everything(store, tmp_path):
    contents = step_files("churn", 2)
    publish(make_bundle(tmp_path / "b1", "churn", contents), store)
    store.put_bytes(index_key("churn"), b"{ truncated")
    assert read_index(store, "churn") == {}
    report = publish(make_bundle(tmp_path / "b2", "churn", contents), store)
    assert report.uploaded_files == len(contents) and report.index_written
    assert len(read_index(store, "churn")) == len(contents) + 1


def test_pipelines_have_separate_indexes(store, tmp_path):
    publish(make_bundle(tmp_path / "a", "churn", step_files("churn", 1)), store)
    report = publish(make_bundle(tmp_path / "b", "fraud", step_files("fraud", 1)), store)
    assert report.skipped_files == 0
    assert all(k.startswith("churn/") for k in read_index(store, "churn"))
    assert all(k.startswith("fraud/") for k in read_index(store, "fraud"))


def test_many_files_upload_in_parallel(store, tmp_path):
    contents = step_files("big", 100)
    report = publish(make_bundle(tmp_path / "b", "big", contents), store, workers=16)
    assert report.uploaded_files == len(contents) == 401
    assert len(_all_keys(store)) == 403


def test_s3_publish_sends_artifacts_on_the_bulk_path_and_only_two_objects_through_boto3(s3, monkeypatch, tmp_path):
    from urllib.parse import unquote, urlsplit

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(s3.root_uri, s3.endpoint_url)
    boto3_puts: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: boto3_puts.append(unquote(urlsplit(request.url).path))
    )
    contents = step_files("churn", 20)
    bundle = make_bundle(tmp_path / "b1", "churn", contents)
    report = publish(bundle, store)
    assert report.uploaded_files == len(contents) == 81
    ours = [p for p in boto3_puts if p.startswith(f"/{s3.bucket}/stepflow/")]
    assert ours == [f"/{s3.bucket}/stepflow/{definition_key('churn', bundle.digest)}",
                    f"/{s3.bucket}/stepflow/{index_key('churn')}"]
    client = s3.client()
    for key, data in contents.items():
        got = client.get_object(Bucket=s3.bucket, Key=f"stepflow/{key}")
        assert got["Body"].read() == data
        assert got["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
