#!/bin/bash
# Self-made PKI for a loopback-only control plane. Usage: pki.sh DIR NODE_NAME
set -euo pipefail
D=$1; NODE=${2:-node1}
mkdir -p "$D"; cd "$D"
# each file is made once (a later run adds only what is missing: certificates a newer recipe needs)
[ -f ca.crt ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=recon-test-ca" 2>/dev/null
cert() { # name CN O [SAN]
  local n=$1 cn=$2 o=$3 san=${4:-}
  [ -f $n.crt ] && return 0
  local subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o/CN=$cn"
  openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj "$subj" 2>/dev/null
  if [ -n "$san" ]; then printf "subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" "$san" > $n.ext
  else printf "extendedKeyUsage=clientAuth\n" > $n.ext; fi
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 3650 -extfile $n.ext 2>/dev/null
  rm -f $n.csr $n.ext
}
cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin admin system:masters
cert controller-manager system:kube-controller-manager ""
cert scheduler system:kube-scheduler ""
cert kubelet-client kube-apiserver-kubelet-client system:masters
cert node system:node:$NODE system:nodes
cert kubelet-serving $NODE "" "IP:127.0.0.1,DNS:$NODE,DNS:localhost"
cert kube-proxy system:kube-proxy ""
cert coredns coredns ""
cert metrics-server-user metrics-server ""
cert aggregator-client front-proxy-client ""   # the aggregator's client (API services: metrics-server)
[ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
