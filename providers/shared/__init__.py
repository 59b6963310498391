"""What more than one provider uses: process supervision (``procs``), model and code files
(``files``), the routing table and keys of an endpoint's router (``routing_table``), probes and
readiness (``probes``), pip requirements from conda files (``requirements``), the scaling and rolling
arithmetic of instance-running providers (``scaling``), and the programs recon runs outside its own
process (``runtime``: the router, the instance host, the warm-start launcher)."""
