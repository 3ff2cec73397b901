"""The cluster block: named leases with fencing tokens (leader election).
Owns ``tickbase.leases``. Nodes, rescue, metrics and alerts join it later."""
