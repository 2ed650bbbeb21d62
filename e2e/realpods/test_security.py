"""The kind suite's privilege scenarios (e2e/test_kind_security.py), unchanged, on real pods
here: the chart's RBAC checked with the operator's real ServiceAccount token, the sandbox's
capabilities inside the pod under the chart's security context, and user code in a build
seeing none of the operator's secrets."""

from e2e.test_kind_security import (  # noqa: F401 - collected here with this directory's fixtures
    test_operator_container_has_only_the_sandbox_capabilities,
    test_service_account_reads_secrets_in_the_watched_namespace_only,
    test_user_code_in_a_build_sees_none_of_the_operators_secrets,
)
