"""One publisher per pipeline name and store: the resource that claimed it first.

A pipeline's folder in the store (``<root>/<pipeline>/``) is keyed by the name the user's
module gives its ``Pipeline``, because that is the name SageMaker and every other tool know
it by: the definition's S3 paths, the backend's record and the executions all hang off it.
Two ``Pipeline`` resources whose modules compile to the same name into the same store (say
``prod`` on ``main`` and ``staging`` on ``dev``) would therefore overwrite each other's
definition, and an execution of one would run the other's code.

We refuse the collision rather than rename. Renaming the published pipeline after the
resource would make the store disagree with the code (``Pipeline(name="churn")`` published
as ``team-prod-churn``), break the SageMaker compatibility of what is published, and hide
from the user that two deployments target one place. Refusing is what the tools a platform
team already runs do when two owners claim one thing: Helm will not adopt a release whose
ownership annotations name another release, Argo CD reports a shared resource and
(``FailOnSharedResource``) refuses to sync it. So the first resource to publish a name into
a store writes an ownership record, ``<pipeline>/.stepflow/owner.json``, with a conditional
create (exactly one of two racing claims wins); any other resource is refused with
``PipelineNameConflict``, naming the owner and the two ways out (its own store prefix, or
another pipeline name), and tries again with backoff. Deleting the owning resource releases
the name, and the waiting one publishes on its next attempt.
"""

from __future__ import annotations

import json

from stepflow import layout, timefmt
from stepflow.errors import INFRASTRUCTURE, StepflowError
from stepflow.gitops.reasons import PIPELINE_NAME_CONFLICT
from stepflow.storage import NotFound, ObjectStore, PreconditionFailed


class PipelineNameConflict(StepflowError):
    """Another resource publishes a pipeline of this name into this store.

    Retried (Ready=False, Reconciling=True/ProgressingWithRetry), not stalled: this
    resource's own input may be right, and the conflict ends when the *other* resource is
    deleted or changed, which never touches this one and so would never wake a stalled one
    (Flux treats a missing dependency the same way). The retry costs one GET: the build is
    kept (``gitops.pending``).
    """

    reason = PIPELINE_NAME_CONFLICT
    kind = INFRASTRUCTURE


def _key(pipeline: str) -> str:
    return layout.in_pipeline(pipeline, layout.owner_key())


def owner(store: ObjectStore, pipeline: str) -> str | None:
    """The resource that publishes ``pipeline`` into ``store``, or None when it is unclaimed."""
    try:
        record = json.loads(store.get_bytes(_key(pipeline)))
    except NotFound:
        return None
    except ValueError:
        return "(an unreadable ownership record)"
    return str(record.get("resource") or "(an ownership record without a resource)")


def claim(store: ObjectStore, pipeline: str, resource: str) -> None:
    """Make ``resource`` the publisher of ``pipeline`` in ``store``, or raise
    :class:`PipelineNameConflict` when another resource already is."""
    holder = owner(store, pipeline)
    if holder is None:
        record = {"resource": resource, "claimedAt": timefmt.seconds()}
        try:
            store.put_bytes(_key(pipeline), (json.dumps(record) + "\n").encode(), if_none_match=True)
            return
        except PreconditionFailed:  # another resource claimed it a moment ago
            holder = owner(store, pipeline)
    if holder != resource:
        raise PipelineNameConflict(
            f"the module compiles the pipeline {pipeline!r}, which {holder} already publishes into "
            f"{store.root_uri}; two resources publishing one name would run each other's definition. "
            f"Give this one its own store (spec.s3RootUri, e.g. {store.root_uri.rstrip('/')}-{_last(resource)}) or "
            f"its pipeline another name (Pipeline(name=...)). If {holder} no longer exists, delete "
            f"{store.uri(_key(pipeline))}.")


def release(store: ObjectStore, pipeline: str, resource: str) -> None:
    """Give up ``pipeline``'s name in ``store`` if ``resource`` holds it (its resource is deleted)."""
    if owner(store, pipeline) == resource:
        store.delete(_key(pipeline))


def _last(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]
