"""What more than one provider uses: process supervision (``procs``), model and code files
(``files``), an endpoint's routing table and its operations (``routing_table``), the table and keys
as files and the router serving them (``endpoint_files``), probes and readiness (``probes``), pip
requirements from conda files (``requirements``), the template of instance-running providers
(``scaling``) with its arithmetic (``rolling``) and what it observes (``observing``), and the
programs recon runs outside its own process (``runtime``: the router, the instance host, the
warm-start launcher)."""
