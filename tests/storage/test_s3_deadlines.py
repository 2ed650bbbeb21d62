"""Every S3 call has a deadline (issue 15, point 2): a frozen server (SIGSTOP: it accepts
connections and never answers) fails a call with ``StoreTimeout`` naming the endpoint and the
limits, through boto3 and through the signed-PUT transport alike; after SIGCONT it serves."""

from __future__ import annotations

import pytest

from stepflow.errors import ConfigurationError, StorageError
from stepflow.storage import open_store
from stepflow.storage.s3 import STORE_TIMEOUT
from stepflow.storage.s3_clients import ATTEMPTS, TIMEOUT, Limits


def test_limits_come_from_the_environment_and_bad_values_name_the_variable():
    assert Limits.from_env({}) == Limits(TIMEOUT, ATTEMPTS)
    assert Limits.from_env({"STEPFLOW_S3_TIMEOUT": "2.5", "STEPFLOW_S3_ATTEMPTS": "1"}) == Limits(2.5, 1)
    for env in ({"STEPFLOW_S3_TIMEOUT": "soon"}, {"STEPFLOW_S3_TIMEOUT": "0"},
                {"STEPFLOW_S3_ATTEMPTS": "0"}, {"STEPFLOW_S3_ATTEMPTS": "many"}):
        with pytest.raises(ConfigurationError, match=next(iter(env))):
            Limits.from_env(env)


def test_a_frozen_server_times_out_every_kind_of_call_then_serves_again(s3, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STEPFLOW_S3_TIMEOUT", "1")
    monkeypatch.setenv("STEPFLOW_S3_ATTEMPTS", "2")
    store = open_store(s3.root_uri)
    store.put_bytes("before.txt", b"1")
    calls = {"get": lambda: store.get_bytes("before.txt"),
             "head": lambda: store.head("before.txt"),
             "list": lambda: list(store.list("")),
             "put_many": lambda: store.put_many([("a.txt", b"a"), ("b.txt", b"b")])}
    with s3.server.process.frozen():
        for what, call in calls.items():
            with pytest.raises(StorageError) as failure:
                call()
            assert failure.value.reason == STORE_TIMEOUT, (what, failure.value)
            assert failure.value.retryable, what
            message = str(failure.value)
            assert s3.endpoint_url in message and "2 attempts of at most 1 s" in message, message
            assert "STEPFLOW_S3_TIMEOUT" in message, message
    assert store.get_bytes("before.txt") == b"1"
    assert [info.key for info in store.put_many([("c.txt", b"c")])] == ["c.txt"]
