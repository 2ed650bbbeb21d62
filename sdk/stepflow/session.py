"""The session: where artifacts go, how they are signed, and which backend runs pipelines.

Explicit arguments win over the configuration (``stepflow.config.load_config``:
environment, then YAML files, then defaults). Ported code passes a session as
``sagemaker_session=``; any Session works there.

It is also ``sagemaker.session.Session`` for ported code: ``boto_region_name``,
``default_bucket()``, ``default_bucket_prefix``, ``upload_data``, ``list_s3_files``,
``sagemaker_client``, ... (docs/COMPATIBILITY.md says what each does here), and
:func:`get_execution_role`.

The session is the one seam between the user API and the compiler: ``Pipeline`` compiles
and publishes through :meth:`Session.compile` and :meth:`Session.published`, which import
the compiler only when called and hand it the pipeline plus this session's store root,
integrity key, region and @step defaults as arguments.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepflow import arns
from stepflow.backends import Backend, default_backend
from stepflow.s3 import determine_bucket_and_prefix, s3_path_join
from stepflow.workflow.defaults import DEFAULT_ROLE_ARN, default_region

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle
    from stepflow.config import StepflowConfig
    from stepflow.storage import ObjectStore
    from stepflow.workflow.pipeline import Pipeline


class Session:
    """Store, key, region and backend; and SageMaker's ``Session`` for ported code.

    The SageMaker keywords: ``boto_session`` (its region is the session's),
    ``sagemaker_client`` (used as given; by default the backend answers the pipeline
    calls), ``default_bucket`` and ``default_bucket_prefix`` (the store becomes
    ``s3://<bucket>/<prefix>`` when no ``s3_root_uri`` is given). SageMaker's other
    clients (runtime, feature store, metrics) and ``settings`` are accepted and unused.
    """

    def __init__(self, s3_root_uri: str | None = None, *, s3_endpoint_url: str | None = None,
                 integrity_key: bytes | None = None, region: str | None = None,
                 backend: Backend | None = None,
                 config: StepflowConfig | None = None,
                 boto_session: Any = None, sagemaker_client: Any = None,
                 default_bucket: str | None = None, default_bucket_prefix: str | None = None,
                 sagemaker_config: Mapping[str, Any] | None = None,
                 sagemaker_runtime_client: Any = None,
                 sagemaker_featurestore_runtime_client: Any = None,
                 sagemaker_metrics_client: Any = None, settings: Any = None) -> None:
        if s3_root_uri is None and default_bucket:
            s3_root_uri = s3_path_join("s3://", default_bucket, default_bucket_prefix)
        self._s3_root_uri = s3_root_uri
        self._s3_endpoint_url = s3_endpoint_url
        self._integrity_key = integrity_key
        self._region = region or getattr(boto_session, "region_name", None)
        self._config = config
        self._boto_session = boto_session
        self._sagemaker_client = sagemaker_client
        self._default_bucket = default_bucket
        self._default_bucket_prefix = default_bucket_prefix
        self.sagemaker_config = sagemaker_config
        self.backend = backend if backend is not None else default_backend(
            lambda: self.store, self.config, region=self._region)

    @cached_property
    def config(self) -> StepflowConfig:
        if self._config is not None:
            return self._config
        from stepflow.config import load_config

        return load_config()

    @property
    def s3_root_uri(self) -> str:
        return (self._s3_root_uri or self.config.s3_root_uri).rstrip("/")

    @property
    def s3_endpoint_url(self) -> str | None:
        return self._s3_endpoint_url or self.config.s3_endpoint_url

    @property
    def integrity_key(self) -> bytes | None:
        return self._integrity_key if self._integrity_key is not None else self.config.integrity_key

    @property
    def region(self) -> str:
        return self._region or default_region()

    boto_region_name = region

    @property
    def remote_function_defaults(self) -> dict[str, Any]:
        """The configured @step defaults (``RemoteFunction`` keys of
        docs/SAGEMAKER-COMPATIBILITY.md), below decorator values."""
        return dict(self.config.remote_function or {})

    @cached_property
    def store(self) -> ObjectStore:
        from stepflow.storage import open_store

        return open_store(self.s3_root_uri, self.s3_endpoint_url)

    def compile(self, pipeline: Pipeline, out_dir: str | None = None, *,
                s3_root_uri: str | None = None,
                previous_index: Mapping[str, str] | None = None) -> Bundle:
        """Compile ``pipeline`` for this session into a bundle folder (nothing is uploaded).

        ``previous_index`` (published key → sha256) lets unchanged steps keep their
        folders; None reads it from this session's store.
        """
        from stepflow.compiler import compile_pipeline
        from stepflow.compiler.publish import read_index

        if previous_index is None:
            previous_index = read_index(self.store, pipeline.name)
        return compile_pipeline(
            pipeline, s3_root_uri=s3_root_uri or self.s3_root_uri, out_dir=out_dir,
            previous_index=previous_index, integrity_key=self.integrity_key,
            region=self.region, remote_function_defaults=self.remote_function_defaults)

    @contextmanager
    def published(self, pipeline: Pipeline) -> Iterator[Bundle]:
        """Compile once into a scratch bundle, publish it to this session's store, and
        remove the bundle when the block ends."""
        from stepflow.compiler.bundle import scratch_dir
        from stepflow.compiler.publish import publish

        bundle = self.compile(pipeline, scratch_dir())
        try:
            publish(bundle, self.store)
            yield bundle
        finally:
            shutil.rmtree(bundle.root, ignore_errors=True)

    # -- sagemaker.session.Session ---------------------------------------------------------

    @property
    def boto_session(self) -> Any:
        """A ``boto3.Session`` in this session's region (the one given, if any)."""
        if self._boto_session is None:
            import boto3

            self._boto_session = boto3.Session(region_name=self.region)
        return self._boto_session

    @property
    def sagemaker_client(self) -> Any:
        """The client given, else the backend answering SageMaker's pipeline calls
        (:class:`stepflow.sagemaker_client.BackendSageMakerClient`)."""
        if self._sagemaker_client is None:
            from stepflow.sagemaker_client import BackendSageMakerClient

            self._sagemaker_client = BackendSageMakerClient(self.backend)
        return self._sagemaker_client

    def account_id(self) -> str:
        """The account in this session's ARNs: the placeholder off AWS."""
        return arns.PLACEHOLDER_ACCOUNT

    def get_caller_identity_arn(self) -> str:
        """The configured role (``RoleArn`` of ``RemoteFunction`` or ``Pipeline``, or
        ``STEPFLOW_ROLE_ARN``), else the placeholder role the definitions carry."""
        role = self.config.remote_function.get("RoleArn") or self.config.pipeline.get("RoleArn")
        return str(role or DEFAULT_ROLE_ARN)

    def _store_bucket(self) -> tuple[str, str] | None:
        """The bucket and prefix of the store, when it is on S3."""
        root = self.s3_root_uri
        if not root.startswith("s3://"):
            return None
        bucket, _, prefix = root[len("s3://"):].partition("/")
        return bucket, prefix.strip("/")

    def default_bucket(self) -> str:
        """The bucket given, else the configured ``DefaultS3Bucket``, else the store's
        bucket; with a ``file://`` store, SageMaker's name ``sagemaker-<region>-<account>``
        with the placeholder account (nothing is created: code that builds URIs from it
        runs, code that writes to it needs S3)."""
        if self._default_bucket:
            return self._default_bucket
        configured = self.config.session.get("DefaultS3Bucket")
        if configured:
            return str(configured)
        store = self._store_bucket()
        if store is not None:
            return store[0]
        return f"sagemaker-{self.region}-{self.account_id()}"

    @property
    def default_bucket_prefix(self) -> str | None:
        """The prefix given, else the configured ``DefaultS3ObjectKeyPrefix``, else the S3
        store's prefix when the default bucket is the store's; None when there is none."""
        if self._default_bucket_prefix is not None:
            return self._default_bucket_prefix.strip("/") or None
        configured = self.config.session.get("DefaultS3ObjectKeyPrefix")
        if configured:
            return str(configured).strip("/") or None
        store = self._store_bucket()
        if store is not None and store[0] == self.default_bucket():
            return store[1] or None
        return None

    def bucket_store(self, bucket: str) -> ObjectStore:
        """A whole bucket as an object store, through this session's S3 endpoint."""
        from stepflow.storage import open_store

        return open_store(f"s3://{bucket}", self.s3_endpoint_url)

    def upload_data(self, path: str, bucket: str | None = None, key_prefix: str = "data",
                    callback: Any = None, extra_args: Mapping[str, Any] | None = None) -> str:
        """Upload a file to ``<key_prefix>/<name>`` or a folder's files (recursively) under
        ``<key_prefix>/``; return ``s3://<bucket>/<key_prefix>[/<name>]``. Without a bucket,
        the default bucket and prefix are used, as in the SDK."""
        if extra_args:
            raise ValueError(
                f"upload_data(extra_args={dict(extra_args)!r}) is not supported: stepflow "
                "uploads with the bucket's defaults. Drop extra_args.")
        bucket, key_prefix = determine_bucket_and_prefix(bucket, key_prefix, self)
        source = Path(path)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            items = [(s3_path_join(key_prefix, p.relative_to(source).as_posix()), p) for p in files]
            suffix = ""
        elif source.is_file():
            items = [(s3_path_join(key_prefix, source.name), source)]
            suffix = source.name
        else:
            raise FileNotFoundError(f"upload_data: {path} is neither a file nor a folder.")
        self.bucket_store(bucket).put_many(items)
        return s3_path_join("s3://", bucket, key_prefix, suffix)

    def upload_string_as_file_body(self, body: str, bucket: str, key: str,
                                   kms_key: str | None = None) -> str:
        if kms_key is not None:
            raise ValueError("kms_key is not supported: stepflow uploads with the bucket's "
                             "default encryption. Drop kms_key.")
        self.bucket_store(bucket).put_bytes(key, body.encode("utf-8"))
        return f"s3://{bucket}/{key}"

    def read_s3_file(self, bucket: str, key_prefix: str) -> str:
        """The object ``key_prefix`` of ``bucket``, decoded as UTF-8."""
        return self.bucket_store(bucket).get_bytes(key_prefix).decode("utf-8")

    def list_s3_files(self, bucket: str, key_prefix: str) -> list[str]:
        """The keys under ``key_prefix`` in ``bucket``."""
        return [info.key for info in self.bucket_store(bucket).list(key_prefix)]

    def download_data(self, path: str, bucket: str, key_prefix: str = "",
                      extra_args: Mapping[str, Any] | None = None) -> list[str]:
        """Download every object under ``key_prefix`` into the folder ``path``; return the
        local paths. As in the SDK, an object keeps its path below ``key_prefix``, or only
        its name when ``key_prefix`` names a file (has an extension); no key may write
        outside ``path``."""
        store = self.bucket_store(bucket)
        root = Path(path).resolve()
        names_a_file = bool(os.path.splitext(key_prefix)[1])
        written = []
        for info in store.list(key_prefix):
            if info.key.endswith("/"):
                continue  # a console-made "folder" marker
            tail = (info.key.rsplit("/", 1)[-1] if names_a_file
                    else os.path.relpath(info.key, key_prefix or "."))
            target = Path(path, tail)
            if not target.resolve().is_relative_to(root):
                raise ValueError(f"download_data: s3://{bucket}/{info.key} would be written to "
                                 f"{target.resolve()}, outside {root}; refusing it.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(info.key))
            written.append(os.fspath(target))
        return written

    def describe_processing_job(self, job_name: str) -> dict[str, Any]:
        """``DescribeProcessingJob`` through :attr:`sagemaker_client`."""
        return dict(self.sagemaker_client.describe_processing_job(ProcessingJobName=job_name))


def get_execution_role(sagemaker_session: Session | None = None, use_default: bool = False) -> str:
    """The role steps run as: the configured one (``RoleArn`` of ``RemoteFunction`` or
    ``Pipeline``, ``STEPFLOW_ROLE_ARN``), else the placeholder
    ``arn:aws:iam::000000000000:role/stepflow-unset-role`` that local and in-cluster runs
    ignore and a SageMaker backend refuses. ``use_default`` creates no role here."""
    return (sagemaker_session or Session()).get_caller_identity_arn()
