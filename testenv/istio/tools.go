//go:build tools

// Package tools pins the Istio commands meshgen's test environment builds from the published
// istio.io/istio Go module (pilot-discovery = istiod, and istioctl). The "tools" build tag is never
// set: this file exists only so go.mod/go.sum track every dependency of those two programs.
// Build with testenv/build.sh istio (tags vtprotobuf,disable_pgv; CGO_ENABLED=0, as upstream).
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
