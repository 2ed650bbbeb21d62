"""GitOps core without Kubernetes: fetch a commit, build it in a sandbox, publish, upsert, run.

Two front ends share it: the kopf operator (``stepflow_operator``), which keeps status on
``Pipeline`` resources, and ``stepflow up``, the embedded loop that needs no cluster.
Nothing here imports Kubernetes; status is plain data shaped like the CRD's status.
"""
