// CoreDNS for the test cluster (.ci/setup-kubernetes.sh builds it): the coredns module's server with only
// the plugins the cluster's Corefile uses (written by setup-kubernetes.sh), so the build leaves out the
// cloud providers' SDKs. This is CoreDNS's own way of choosing plugins at build time: the Directives
// list (in execution order, as in its plugin.cfg) and the plugins' packages imported for their
// registration.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
