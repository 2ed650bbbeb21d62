#!/usr/bin/env bash
# Regenerate go.mod/go.sum of this module for another Kubernetes release:
#   scripts/testenv-go/kube/regen.sh 1.34.4
# then set KUBE_VERSION in scripts/testenv-go/versions.env to the same release.
set -euo pipefail
V=${1:?usage: regen.sh X.Y.Z (Kubernetes release without the v)}
cd "$(dirname "$0")"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
{
  sed -n '1,/^module /p' go.mod | sed '$d'
  printf 'module stepflow.dev/testenv/kube\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\n' "$V"
  for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m v0.${V#1.}"; done
} > go.mod.new
mv go.mod.new go.mod
rm -f go.sum
GOFLAGS=-mod=mod go mod tidy
echo "regenerated for k8s.io/kubernetes v$V; the list of staging modules must match staging/src/k8s.io of that release"
