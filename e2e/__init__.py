"""The kind-based end-to-end suite (see README.md). Not collected by `make test`."""
