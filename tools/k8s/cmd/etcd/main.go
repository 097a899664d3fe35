// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain, as
// etcd's main module runs it), built here at the version k8s.io/kubernetes
// requires so that make test-k8s runs the API server on the etcd it is
// released with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
