"""``stepflow.workflow.pipeline_context``: SageMaker's pipeline sessions.

In the SDK a ``PipelineSession`` makes ``processor.run(...)`` and ``estimator.fit(...)``
return a step's arguments instead of starting a job. Every stepflow session already
behaves that way (nothing runs outside a pipeline), so a ``PipelineSession`` is a
:class:`~stepflow.session.Session` under the SDK's name, and a ``LocalPipelineSession`` is
one that runs pipelines on this machine (the ``local`` backend, whichever backend is passed).
"""

from __future__ import annotations

from typing import Any

from stepflow.session import Session

__all__ = ["LocalPipelineSession", "PipelineSession"]


class PipelineSession(Session):
    """A session for building pipelines; takes :class:`Session`'s arguments."""

    #: The SDK keeps the step being built here; builders here need no such state.
    context: Any = None


class LocalPipelineSession(PipelineSession):
    """A pipeline session on the local backend (:func:`stepflow.backends.default_backend`).

    ``s3_endpoint_url`` is the S3 endpoint of the store, as in the SDK's class;
    ``disable_local_code`` is accepted (there is no local-mode image to mount code into).
    """

    def __init__(self, boto_session: Any = None, default_bucket: str | None = None,
                 s3_endpoint_url: str | None = None, disable_local_code: bool = False,
                 default_bucket_prefix: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("backend", None)  # the default backend is the local one
        super().__init__(boto_session=boto_session, default_bucket=default_bucket,
                         s3_endpoint_url=s3_endpoint_url,
                         default_bucket_prefix=default_bucket_prefix, **kwargs)
