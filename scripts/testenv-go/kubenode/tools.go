//go:build tools

// Package tools pins the node and controller commands this module builds (kubelet,
// kube-controller-manager, kube-scheduler), so "go mod tidy" keeps their dependencies in
// go.sum. A module of its own, beside ../kube: the real-pods cluster needs these, the
// control-plane-only tests do not, and ../kube's digest (hence its cached build) stays put.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
