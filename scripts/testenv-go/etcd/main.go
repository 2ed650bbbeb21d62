// Command etcd is etcd's own server entrypoint, built from the published
// go.etcd.io/etcd/server/v3 module at the version pinned in go.mod.
// etcd's repository uses relative replace directives, so `go install` of
// etcd itself is refused; a main of our own that calls etcdmain.Main is the
// way to build it from the module proxy (see docs/TESTING.md).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
