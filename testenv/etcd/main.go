// Command etcd is a thin wrapper that builds the upstream etcd server from its
// published Go module (go.etcd.io/etcd/server/v3) for meshgen's test environment.
// Build with testenv/build.sh etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
