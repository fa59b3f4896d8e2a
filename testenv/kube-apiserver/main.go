// Command kube-apiserver is a thin wrapper that builds the upstream kube-apiserver from the
// published k8s.io/kubernetes Go module for meshgen's test environment (mirrors
// k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go). Build with testenv/build.sh kube-apiserver.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob time zone support, as upstream

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
