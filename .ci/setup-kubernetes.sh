#!/usr/bin/env bash
# A real Kubernetes v1.37.2 cluster on loopback for recon's Kubernetes tests, from the Go module proxy
# and Debian's packages only (no image registry, no download site).
#
#   setup-kubernetes.sh build     build what is missing into the cache (idempotent; cold ~22 min on 2 cores)
#   setup-kubernetes.sh up        etcd + kube-apiserver + controller-manager + scheduler + kwok nodes
#   setup-kubernetes.sh up-real   as "up", plus containerd (Debian) + kubelet: a real node "localhost",
#                                 and kube-proxy, CoreDNS, metrics-server (host processes on the pod bridge)
#   setup-kubernetes.sh down      stop everything any "up" started (by pid files, then any process of ours
#                                 left), unmount, drop the bridge and our iptables rules
#   "up"/"up-real" on a running cluster keep it (same processes) and start only what is missing.
#   setup-kubernetes.sh env       print "export KUBECONFIG=..."
#   setup-kubernetes.sh status    print ok | failed | running | absent (the build's state)
#
# Binaries are built once per machine into RECON_K8S_CACHE (default /var/cache/recon-k8s), with their
# own Go module and build caches there; later runs reuse them. The running cluster lives under
# RECON_K8S_RUN (default $RECON_K8S_CACHE/run). Only 127.0.0.1 is used, plus the pod bridge and network
# namespaces the CNI bridge plugin makes for real pods (10.244.0.0/24).
# Adapted from a recipe measured on this kind of machine: etcd v3.7.3, kwok v0.8.0.
set -euo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
K8S="$HERE/k8s"                              # pki.sh, mkimage.py, pause.go
CACHE="${RECON_K8S_CACHE:-/var/cache/recon-k8s}"
BIN="$CACHE/bin"
RUN="${RECON_K8S_RUN:-$CACHE/run}"
PKI="$RUN/pki"
LOG="$RUN/log"
KVER=v1.37.2                # k8s.io/kubernetes
SVER="v0${KVER#v1}"         # its staging modules: v0.37.2
ETCD_VER=v3.7.3             # go.etcd.io/etcd/server/v3
KWOK_VER=v0.8.0             # sigs.k8s.io/kwok
COREDNS_VER=v1.14.4         # github.com/coredns/coredns (cluster DNS)
METRICS_VER=v0.8.0          # sigs.k8s.io/metrics-server (the HPA's resource metrics)
NODE=localhost              # real node name: the kubelet reports Hostname=localhost, the apiserver dials that
KWOK_NODES="${KWOK_NODES:-kwok-node-0 kwok-node-1}"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd kwok pause coredns metrics-server"
export PATH="/usr/local/go/bin:$BIN:$PATH"
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
export KUBECONFIG="$RUN/admin.kubeconfig"

log() { echo "[k8s $(date +%T)] $*" >&2; }
ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- build
build_k8s() { # binaries...
    local need=() b
    for b in "$@"; do
        if [ "$b" = coredns ]; then coredns_current || need+=("$b"); else [ -x "$BIN/$b" ] || need+=("$b"); fi
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    mkdir -p "$CACHE/build/tools" "$BIN"
    cd "$CACHE/build"
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...
    # (not in the module zip): map every such module to its published tag.
    [ -f "$GOMODCACHE/k8s.io/kubernetes@$KVER/go.mod" ] || go mod download "k8s.io/kubernetes@$KVER"
    # kwok and CoreDNS are built in the same module, against the same k8s.io libraries (the replaces pin
    # every one to $SVER): they reuse what the Kubernetes binaries compiled (kwok: 38 s instead of 321 s
    # cold; CoreDNS alone, cold, took 6 minutes). Not metrics-server: see build_metrics_server.
    {
        printf 'module recontestcluster\n\ngo 1.26.0\n\nrequire (\n\tk8s.io/kubernetes %s\n\tsigs.k8s.io/kwok %s\n' "$KVER" "$KWOK_VER"
        printf '\tgithub.com/coredns/coredns %s\n)\n\nreplace (\n' "$COREDNS_VER"
        awk -v v="$SVER" '/^[ \t]+k8s\.io\/[^ ]+ v0\.0\.0$/ {print "\t" $1 " => " $1 " " v}' \
            "$GOMODCACHE/k8s.io/kubernetes@$KVER/go.mod"
        printf ')\n'
    } > go.mod.new
    cmp -s go.mod.new go.mod 2>/dev/null || { mv go.mod.new go.mod; rm -f go.sum; }
    rm -f go.mod.new
    printf '//go:build tools\n\npackage tools\n\nimport (\n' > tools/tools.go
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
        printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b" >> tools/tools.go
    done
    printf '\t_ "sigs.k8s.io/kwok/cmd/kwok"\n)\n' >> tools/tools.go
    # CoreDNS with only the plugins the cluster's Corefile uses (its own way of choosing plugins at
    # build time: the Directives list and the plugins' packages), so no cloud SDK is compiled
    mkdir -p coredns && cp "$K8S/coredns.go" coredns/main.go
    [ -f go.sum ] || go mod tidy
    local LD="-s -w -X k8s.io/component-base/version.gitVersion=$KVER -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
    for b in "${need[@]}"; do
        log "building $b"; local s pkg="k8s.io/kubernetes/cmd/$b"; s=$(ts)
        case "$b" in
            kwok) pkg=sigs.k8s.io/kwok/cmd/kwok ;;
            coredns) pkg=./coredns ;;
        esac
        go build -trimpath -ldflags "$LD" -o "$BIN/$b.tmp" "$pkg"
        mv "$BIN/$b.tmp" "$BIN/$b"
        log "built $b in $(since "$s")s"
    done
}

build_etcd() {
    [ -x "$BIN/etcd" ] && return 0
    mkdir -p "$CACHE/build-etcd" "$BIN" && cd "$CACHE/build-etcd"
    # server/v3's go.mod replaces its sibling modules with ../api etc.; pin them explicitly instead.
    printf 'module recontestetcd\n\ngo 1.26.0\n\nrequire (\n' > go.mod
    local m
    for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
        printf '\tgo.etcd.io/etcd/%s %s\n' "$m" "$ETCD_VER" >> go.mod
    done
    printf ')\n' >> go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    [ -f go.sum ] || go mod tidy
    log "building etcd"; local s; s=$(ts)
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    log "built etcd in $(since "$s")s"
}

build_metrics_server() {
    # In a module of its own, with the k8s.io libraries its go.mod asks for (v0.33): built against the
    # cluster's v0.37 (the first recipe) it panics at start ("unable to get openapi models: cannot find
    # model definition for io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": v0.37 names OpenAPI
    # models differently from the definitions metrics-server v0.8.0 generated). Cold, alone: ~11 min.
    metrics_server_current && return 0
    mkdir -p "$CACHE/build-metrics-server" "$BIN" && cd "$CACHE/build-metrics-server"
    printf 'module recontestmetrics\n\ngo 1.26.0\n\nrequire sigs.k8s.io/metrics-server %s\n' "$METRICS_VER" > go.mod.new
    cmp -s go.mod.new go.mod 2>/dev/null || { mv go.mod.new go.mod; rm -f go.sum; }
    rm -f go.mod.new
    printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/metrics-server/cmd/metrics-server"\n' > tools.go
    [ -f go.sum ] || go mod tidy
    log "building metrics-server"; local s; s=$(ts)
    go build -trimpath -ldflags "-s -w" -o "$BIN/metrics-server.tmp" sigs.k8s.io/metrics-server/cmd/metrics-server
    mv "$BIN/metrics-server.tmp" "$BIN/metrics-server"
    log "built metrics-server in $(since "$s")s"
}

# one built by the first recipe (in the cluster's module: its k8s.io libraries replaced, so `go version
# -m` shows "=>") panics at start: it is built again
metrics_server_current() { [ -x "$BIN/metrics-server" ] && ! go version -m "$BIN/metrics-server" | grep -q '=>'; }

coredns_current() { [ -x "$BIN/coredns" ] && "$BIN/coredns" -plugins 2> /dev/null | grep -qx bind; }

build_pause() {
    [ -x "$BIN/pause" ] && return 0
    mkdir -p "$BIN" "$CACHE/build-pause"
    cp "$K8S/pause.go" "$CACHE/build-pause/pause.go"
    (cd "$CACHE/build-pause" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$BIN/pause" pause.go)
}

build_all() {
    command -v go > /dev/null || { log "ERROR: go not found (looked in PATH and /usr/local/go/bin)"; return 1; }
    command -v openssl > /dev/null || { log "ERROR: openssl not found"; return 1; }
    build_k8s kube-apiserver kube-controller-manager kube-scheduler kubelet kwok
    build_etcd
    build_pause
    build_k8s kube-proxy coredns
    build_metrics_server
    build_k8s kubectl   # last: the tests use it to change objects behind recon's back
}

# build with a lock (one build per machine at a time) and a status file the tests wait on:
#   $CACHE/build.status: running PID | ok | failed
cmd_build() {
    mkdir -p "$CACHE"
    exec 9> "$CACHE/build.lock"
    if ! flock -n 9; then
        log "another build holds $CACHE/build.lock; waiting for it"
        flock 9
    fi
    if all_built; then echo ok > "$CACHE/build.status"; log "binaries present in $BIN"; return 0; fi
    echo "running $$" > "$CACHE/build.status"
    local s; s=$(ts)
    if (build_all); then
        echo ok > "$CACHE/build.status"; log "build done in $(since "$s")s"
    else
        echo failed > "$CACHE/build.status"; log "ERROR: build failed after $(since "$s")s"; return 1
    fi
}

all_built() {
    local b
    for b in $BINARIES; do
        [ -x "$BIN/$b" ] || return 1
    done
    coredns_current   # one built before the bind plugin was in its recipe is built again
    metrics_server_current
}

cmd_status() {
    if all_built; then echo ok; return 0; fi
    local st; st="$(cat "$CACHE/build.status" 2> /dev/null || echo absent)"
    case "$st" in
        running*) kill -0 "${st#running }" 2> /dev/null && echo running || echo failed ;;
        *) echo "$st" ;;
    esac
}

# ---------------------------------------------------------------- helpers
start_bg() { # name cmd...   -> $RUN/name.pid, $LOG/name.log
    local name=$1; shift
    setsid "$@" > "$LOG/$name.log" 2>&1 < /dev/null 8>&- &   # own session: survives the calling shell; not holding up.lock
    echo $! > "$RUN/$name.pid"
    log "started $name pid $!"
}

wait_for() { # description timeout_s command...
    local what=$1 t=$2 s; shift 2
    s=$(ts)
    for _ in $(seq $((t * 5))); do
        if "$@" > /dev/null 2>&1; then log "$what ready after $(since "$s")s"; return 0; fi
        sleep 0.2
    done
    log "TIMEOUT waiting for $what"; return 1
}

kubeconfig() { # file user cert key
    cat > "$1" << EOF
apiVersion: v1
kind: Config
clusters:
- name: recon-test
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$PKI/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$3", client-key: "$4"}
contexts:
- name: recon-test
  context: {cluster: recon-test, user: $2}
current-context: recon-test
EOF
}

# ---------------------------------------------------------------- control plane
up_control_plane() {
    mkdir -p "$RUN" "$LOG"
    bash "$K8S/pki.sh" "$PKI" "$NODE"
    kubeconfig "$RUN/admin.kubeconfig" admin "$PKI/admin.crt" "$PKI/admin.key"
    kubeconfig "$RUN/controller-manager.kubeconfig" kcm "$PKI/controller-manager.crt" "$PKI/controller-manager.key"
    kubeconfig "$RUN/scheduler.kubeconfig" scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"
    kubeconfig "$RUN/kubelet.kubeconfig" node "$PKI/node.crt" "$PKI/node.key"
    rm -rf "$RUN/etcd"   # a cluster that is started (not one found running) starts empty
    guard_api_port

    start_bg etcd "$BIN/etcd" --name recon-test --data-dir "$RUN/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster recon-test=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
        --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
    wait_for etcd 30 curl -sf http://127.0.0.1:2381/health

    local t; t=$(ts)
    start_bg kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers http://127.0.0.1:2379 \
        --bind-address 0.0.0.0 --advertise-address 127.0.0.1 --secure-port 6443 \
        --endpoint-reconciler-type none \
        --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/aggregator-client.crt" --proxy-client-key-file "$PKI/aggregator-client.key" \
        --enable-aggregator-routing=true \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types Hostname \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range 10.0.0.0/24 \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction,ResourceQuota \
        --allow-privileged=true --profiling=false --v=1
    wait_for "kube-apiserver /readyz" 120 curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" \
        --key "$PKI/admin.key" https://127.0.0.1:6443/readyz
    log "kube-apiserver start -> /readyz ok: $(since "$t")s"

    start_bg kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port 10257 \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --use-service-account-credentials --leader-elect=false \
        --service-cluster-ip-range 10.0.0.0/24 --v=1
    start_bg kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$RUN/scheduler.kubeconfig" \
        --authentication-kubeconfig "$RUN/scheduler.kubeconfig" \
        --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --v=1
    wait_for kube-controller-manager 60 curl -sfk https://127.0.0.1:10257/healthz
    wait_for kube-scheduler 60 curl -sfk https://127.0.0.1:10259/healthz
    # the default ServiceAccount must exist before pods can be created
    wait_for "default serviceaccount" 60 kubectl get serviceaccount default
}

up_kwok() {
    # kwok fakes kubelets for nodes annotated kwok.x-k8s.io/node=fake: their pods go Running, no
    # containers. v0.8.0 needs stage definitions: the "fast" set shipped in its module source.
    local S="$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VER/kustomize/stage" f n
    [ -d "$S" ] || (cd "$CACHE/build" && go mod download "sigs.k8s.io/kwok@$KWOK_VER")
    for f in "$S/node/fast/node-initialize.yaml" "$S/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
             "$S/pod/fast/pod-ready.yaml" "$S/pod/fast/pod-complete.yaml" "$S/pod/fast/pod-delete.yaml"; do
        echo "---"; cat "$f"
    done > "$RUN/kwok-stages.yaml"
    start_bg kwok "$BIN/kwok" --kubeconfig "$RUN/admin.kubeconfig" -c "$RUN/kwok-stages.yaml" \
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --cidr=10.245.0.1/24 --node-ip=10.245.0.1 --node-lease-duration-seconds=40 --server-address 127.0.0.1:10247
    for n in $KWOK_NODES; do
        kubectl apply -f - > /dev/null << EOF
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: $n, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
spec:
  taints: [{key: recon-test/kwok, value: "true", effect: NoSchedule}]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
    done
    for n in $KWOK_NODES; do wait_for "kwok node $n Ready" 60 kubectl wait --for=condition=Ready "node/$n" --timeout=2s; done
}

# ---------------------------------------------------------------- real node: containerd + kubelet
up_real_node() {
    command -v containerd > /dev/null && command -v runc > /dev/null && [ -x /usr/lib/cni/bridge ] || {
        log "installing containerd runc containernetworking-plugins iptables conntrack (Debian)"
        . "$HERE/lib.sh"
        apt_install containerd runc containernetworking-plugins iptables conntrack
    }
    local C="$RUN/containerd"
    mkdir -p "$C" "$RUN/cni/net.d" "$RUN/kubelet"
    make_bridge
    # pods route the pod subnet and the Services' (10.0.0.0/24: kube-proxy's, through the bridge), no more
    cat > "$RUN/cni/net.d/10-recon-test.conflist" << EOF
{"cniVersion": "0.4.0", "name": "recon-test", "plugins": [
  {"type": "bridge", "bridge": "recontestbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "10.0.0.0/24"}]}},
  {"type": "loopback"}]}
EOF
    cat > "$C/config.toml" << EOF
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "local/pause:v1"
  enable_unprivileged_ports = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
    # Docker (when present) loads br_netfilter and sets FORWARD's policy to DROP: pod-to-pod traffic on
    # our bridge (router -> instances) would be dropped. Accept what stays inside the pod subnet.
    if command -v iptables > /dev/null; then
        for dir in -s -d; do
            iptables -C FORWARD "$dir" 10.244.0.0/24 -j ACCEPT 2> /dev/null || iptables -I FORWARD 1 "$dir" 10.244.0.0/24 -j ACCEPT
        done
    fi
    start_bg containerd containerd --config "$C/config.toml"
    wait_for containerd 30 ctr --address "$C/containerd.sock" version
    import_pause
    import_python

    printf 'nameserver 127.0.0.1\n' > "$RUN/resolv.conf"
    cat > "$RUN/kubelet-config.yaml" << EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
containerRuntimeEndpoint: "unix://$C/containerd.sock"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
resolvConf: "$RUN/resolv.conf"
podCIDR: 10.244.0.0/24
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
registerNode: true
syncFrequency: 5s
EOF
    printf 'clusterDNS: [10.0.0.10]\nclusterDomain: cluster.local\n' >> "$RUN/kubelet-config.yaml"
    start_bg kubelet "$BIN/kubelet" --config "$RUN/kubelet-config.yaml" --kubeconfig "$RUN/kubelet.kubeconfig" \
        --root-dir "$RUN/kubelet" --hostname-override "$NODE" --v=1
    wait_for "node $NODE Ready" 120 kubectl wait --for=condition=Ready "node/$NODE" --timeout=2s
}

# ---------------------------------------------------------------- the pod bridge, the API port's guard
# The pod bridge is made before the node (the CNI bridge plugin takes it as it finds it): the host's
# add-ons listen on its address $HOST from the start.
HOST=10.244.0.1
make_bridge() {
    ip link show recontestbr0 > /dev/null 2>&1 || ip link add recontestbr0 type bridge
    ip -4 addr show dev recontestbr0 | grep -q "inet $HOST/24" || ip addr add "$HOST/24" dev recontestbr0
    ip link set recontestbr0 up
}

# Pods reach the API server through the "kubernetes" Service (10.0.0.1:443 -> $HOST:6443), so it listens
# on every address; this chain keeps its port to loopback and the pod bridge.
guard_api_port() {
    command -v iptables > /dev/null || return 0
    iptables -N RECON-TEST-API 2> /dev/null || iptables -F RECON-TEST-API
    iptables -A RECON-TEST-API -i lo -j RETURN
    iptables -A RECON-TEST-API -i recontestbr0 -j RETURN
    iptables -A RECON-TEST-API -j DROP
    iptables -C INPUT -p tcp --dport 6443 -j RECON-TEST-API 2> /dev/null || iptables -I INPUT -p tcp --dport 6443 -j RECON-TEST-API
}

unguard_api_port() {
    command -v iptables > /dev/null || return 0
    while iptables -D INPUT -p tcp --dport 6443 -j RECON-TEST-API 2> /dev/null; do :; done
    iptables -F RECON-TEST-API 2> /dev/null || true
    iptables -X RECON-TEST-API 2> /dev/null || true
}

# ---------------------------------------------------------------- add-ons: kube-proxy, CoreDNS, metrics-server
# On the host, each with a client certificate of its own (pki.sh) and the RBAC of .ci/k8s/addons.yaml;
# each is started only when it is not running already.
up_addons() {
    sed "s/HOST/$HOST/g" "$K8S/addons.yaml" | kubectl apply -f - > /dev/null
    # the host reaches Services as a node does (kube-proxy's rules in its OUTPUT chain): a route of the
    # Service range through the pod bridge, for hosts whose own table has none (or refuses it); metric 100,
    # so a route of the host's own to that range wins; it goes with the bridge on down
    ip route replace 10.0.0.0/24 dev recontestbr0 src "$HOST" metric 100
    if ! running kube-proxy; then
        kubeconfig "$RUN/kube-proxy.kubeconfig" kube-proxy "$PKI/kube-proxy.crt" "$PKI/kube-proxy.key"
        cat > "$RUN/kube-proxy-config.yaml" << EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$RUN/kube-proxy.kubeconfig"}
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: iptables
clusterCIDR: 10.244.0.0/24
detectLocalMode: ClusterCIDR
nodePortAddresses: ["$HOST/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0}
oomScoreAdj: 0
EOF
        start_bg kube-proxy "$BIN/kube-proxy" --config "$RUN/kube-proxy-config.yaml" --v=1
    fi
    if ! running coredns; then
        kubeconfig "$RUN/coredns.kubeconfig" coredns "$PKI/coredns.crt" "$PKI/coredns.key"
        cat > "$RUN/Corefile" << EOF
.:53 {
    bind $HOST
    errors
    health 127.0.0.1:10254
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $RUN/coredns.kubeconfig recon-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loadbalance
}
EOF
        start_bg coredns "$BIN/coredns" -conf "$RUN/Corefile"
    fi
    if ! running metrics-server; then
        kubeconfig "$RUN/metrics-server.kubeconfig" metrics-server "$PKI/metrics-server-user.crt" "$PKI/metrics-server-user.key"
        mkdir -p "$RUN/metrics-server"
        # the kubelet's address is its Hostname ("localhost"); its serving certificate is one of our CA's
        start_bg metrics-server "$BIN/metrics-server" --kubeconfig "$RUN/metrics-server.kubeconfig" \
            --authentication-kubeconfig "$RUN/metrics-server.kubeconfig" \
            --authorization-kubeconfig "$RUN/metrics-server.kubeconfig" \
            --bind-address "$HOST" --secure-port 4443 --cert-dir "$RUN/metrics-server" \
            --kubelet-preferred-address-types Hostname --kubelet-certificate-authority "$PKI/ca.crt" \
            --kubelet-use-node-status-port --metric-resolution 15s --v=1
    fi
    wait_for kube-proxy 60 curl -sf http://127.0.0.1:10256/healthz
    wait_for coredns 60 curl -sf http://127.0.0.1:10254/health
    wait_for "metrics API" 120 kubectl --request-timeout=5s get --raw /apis/metrics.k8s.io/v1beta1/nodes
}

import_pause() {
    local img="$RUN/images"
    build_pause
    mkdir -p "$img/pause/rootfs"
    cp "$BIN/pause" "$img/pause/rootfs/pause"
    python3 "$K8S/mkimage.py" "$img/pause/rootfs" local/pause:v1 "$img/pause.tar" /pause > /dev/null
    ctr --address "$RUN/containerd/containerd.sock" -n k8s.io images import "$img/pause.tar" > /dev/null
}

# local/python:3.11 for real pods (router and instances): this machine's python3.11, the shared
# libraries it and its standard library's extension modules load, glibc's compatibility libraries that
# wheels' compiled modules link (libpthread, libdl, librt, libutil: httptools needs libpthread), the
# standard library; no shell. Made once into the cache (the file name changes with the recipe),
# imported on every up-real.
PYTHON_IMAGE=python-2.tar
import_python() {
    local img="$CACHE/images" R
    mkdir -p "$img"
    if [ ! -f "$img/$PYTHON_IMAGE" ]; then
        R="$img/python/rootfs"
        rm -rf "$img/python"
        mkdir -p "$R/usr/bin" "$R/usr/lib" "$R/lib64" "$R/tmp" "$R/etc"
        chmod 1777 "$R/tmp"
        cp /usr/bin/python3.11 "$R/usr/bin/"; ln -sf python3.11 "$R/usr/bin/python3"; ln -sf python3.11 "$R/usr/bin/python"
        local l
        for l in $({ ldd /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so 2> /dev/null || true; } | grep -o '/[^ ]*' | sort -u) \
                 /lib/x86_64-linux-gnu/{libpthread.so.0,libdl.so.2,librt.so.1,libutil.so.1}; do
            [ -e "$l" ] || continue
            mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"
        done
        cp -a /usr/lib/python3.11 "$R/usr/lib/"
        rm -rf "$R"/usr/lib/python3.11/{test,idlelib,tkinter,ensurepip,lib2to3,turtledemo} "$R/usr/lib/python3.11/dist-packages"
        find "$R" -name __pycache__ -prune -exec rm -rf {} +
        ln -sf usr/lib "$R/lib"
        printf 'root:x:0:0::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' > "$R/etc/passwd"
        python3 "$K8S/mkimage.py" "$R" local/python:3.11 "$img/$PYTHON_IMAGE.tmp" /usr/bin/python3 > /dev/null
        mv "$img/$PYTHON_IMAGE.tmp" "$img/$PYTHON_IMAGE"
        rm -rf "$img/python" "$img/python.tar"
    fi
    ctr --address "$RUN/containerd/containerd.sock" -n k8s.io images import "$img/$PYTHON_IMAGE" > /dev/null
    log "image local/python:3.11 imported (pods: image local/python:3.11, imagePullPolicy Never)"
}

# ---------------------------------------------------------------- down
stop_pid() { # name
    local f="$RUN/$1.pid" p
    [ -f "$f" ] || return 0
    p=$(cat "$f")
    if kill -0 "$p" 2> /dev/null; then
        kill "$p"; for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.2; done
        kill -0 "$p" 2> /dev/null && kill -9 "$p"
        log "stopped $1 ($p)"
    fi
    rm -f "$f"
}

# Processes an earlier "up" started that no pid file names any more (a pid file overwritten by an "up" on
# a running cluster, before "up" checked): our binaries, or containerd, whose command line names $RUN.
strays() {
    local p exe
    for p in $(grep -l -a -F "$RUN/" /proc/[0-9]*/cmdline 2> /dev/null | cut -d/ -f3); do
        [ "$p" = "$$" ] && continue
        exe=$(readlink "/proc/$p/exe" 2> /dev/null) || continue
        case "$exe" in "$BIN"/* | */containerd | */containerd-shim*) echo "$p" ;; esac
    done
}

down() {
    stop_pid kubelet
    if [ -S "$RUN/containerd/containerd.sock" ]; then
        local ctr="ctr --address $RUN/containerd/containerd.sock -n k8s.io" t c
        for t in $($ctr tasks ls -q 2> /dev/null); do $ctr tasks kill -s SIGKILL "$t" 2> /dev/null || true; done
        sleep 1
        for t in $($ctr tasks ls -q 2> /dev/null); do $ctr tasks delete -f "$t" > /dev/null 2>&1 || true; done
        for c in $($ctr containers ls -q 2> /dev/null); do $ctr containers delete "$c" > /dev/null 2>&1 || true; done
    fi
    # shims started by our containerd (identified by our socket path) that are still alive
    local p
    for p in $(grep -l -a "$RUN/containerd/containerd.sock" /proc/[0-9]*/cmdline 2> /dev/null | cut -d/ -f3); do
        [ "$p" != "$$" ] && [ "$(cat "$RUN/containerd.pid" 2> /dev/null)" != "$p" ] && kill "$p" 2> /dev/null || true
    done
    stop_pid containerd
    for n in metrics-server coredns kube-proxy kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
        stop_pid "$n"
    done
    local left; left=$(strays)
    if [ -n "$left" ]; then
        log "stopping processes of an earlier up that no pid file names: $(echo $left)"
        kill $left 2> /dev/null || true; sleep 2
        left=$(strays); [ -z "$left" ] || kill -9 $left 2> /dev/null || true
    fi
    [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup > /dev/null 2>&1 || true   # its iptables chains
    # unmount what kubelet/containerd left mounted under $RUN (deepest first); drop pod netns + bridge
    { grep -o " $RUN/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2> /dev/null || true; done
    { grep -o " /run/netns/cni-[^ ]*" /proc/mounts || true; } | while read -r m; do umount -l "$m" 2> /dev/null || true; rm -f "$m"; done
    if ip link show recontestbr0 > /dev/null 2>&1; then ip link delete recontestbr0 || true; fi
    if command -v iptables > /dev/null; then
        for dir in -s -d; do
            while iptables -D FORWARD "$dir" 10.244.0.0/24 -j ACCEPT 2> /dev/null; do :; done
        done
    fi
    unguard_api_port
    rm -rf /var/lib/cni/networks/recon-test   # host-local IPAM leases of our bridge network
    [ "${1:-}" = "--purge" ] && rm -rf "$RUN"
    log "down"
}

# ---------------------------------------------------------------- up on a running cluster
# "up" keeps what runs and is healthy (the same processes, the same cluster), starts what is missing, and
# restarts cleanly (down, then up) a control plane or a node found half running.
running() { # name: its pid file names a live process of that program
    local p
    p=$(cat "$RUN/$1.pid" 2> /dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2> /dev/null && grep -q -a -F "$1" "/proc/$p/cmdline" 2> /dev/null
}

api_ready() {
    curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        https://127.0.0.1:6443/readyz > /dev/null 2>&1
}

CONTROL="etcd kube-apiserver kube-controller-manager kube-scheduler"
NODE_PARTS="containerd kubelet"
up_cluster() { # kwok | real
    mkdir -p "$RUN" "$LOG"
    local n all=1 any=0
    for n in $CONTROL; do if running "$n"; then any=1; else all=0; fi; done
    if [ "$all" = 1 ] && api_ready; then
        log "control plane already running (etcd pid $(cat "$RUN/etcd.pid")): kept"
    else
        [ "$any" = 1 ] && { log "a control plane is partly running or not answering: stopping it first"; down; }
        up_control_plane
    fi
    running kwok || up_kwok
    [ "$1" = real ] || return 0
    all=1 any=0
    for n in $NODE_PARTS; do if running "$n"; then any=1; else all=0; fi; done
    if [ "$all" = 1 ] && kubectl wait --for=condition=Ready "node/$NODE" --timeout=20s > /dev/null 2>&1; then
        log "node $NODE already running (kubelet pid $(cat "$RUN/kubelet.pid")): kept"
    else
        if [ "$any" = 1 ]; then
            log "node $NODE is partly running or not Ready: restarting the cluster"
            down; up_control_plane; up_kwok
        fi
        up_real_node
    fi
    up_addons
}

need_built() { all_built || { log "ERROR: binaries missing in $BIN; run: $0 build"; exit 1; }; }

# one "up" or "down" at a time on this machine's cluster
locked() {
    mkdir -p "$CACHE"
    exec 8> "$CACHE/up.lock"
    flock 8
    "$@"
}

case "${1:-}" in
    build) cmd_build ;;
    status) cmd_status ;;
    up) need_built; locked up_cluster kwok; echo "export KUBECONFIG=$KUBECONFIG" ;;
    up-real) need_built; locked up_cluster real; echo "export KUBECONFIG=$KUBECONFIG" ;;
    down) locked down "${2:-}" ;;
    env) echo "export KUBECONFIG=$KUBECONFIG" ;;
    *) echo "usage: $0 build|status|up|up-real|down [--purge]|env" >&2; exit 2 ;;
esac
