"""Addresses and ports fixed outside this project, by Google Cloud or PostgreSQL, that the stacks
and components open. analysis/reachability/core.py keeps its own copy on purpose: it checks the synth
independently and imports only the standard library."""

from __future__ import annotations

import ipaddress

ANYWHERE = "0.0.0.0/0"
# Google Cloud health checkers (cloud.google.com/load-balancing/docs/health-check-concepts#ip-ranges).
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# private.googleapis.com, the VIPs for Google APIs over Private Google Access
# (cloud.google.com/vpc/docs/configure-private-google-access#domain-options).
PRIVATE_GOOGLE_APIS_RANGE = "199.36.153.8/30"
PRIVATE_GOOGLE_APIS_ADDRESSES = tuple(str(a) for a in ipaddress.IPv4Network(PRIVATE_GOOGLE_APIS_RANGE))
HTTP_PORT = 80
HTTPS_PORT = 443
# PostgreSQL's port, which Cloud SQL listens on and libpq dials when PGPORT is unset
# (postgresql.org/docs/current/runtime-config-connection.html#GUC-PORT).
POSTGRES_PORT = 5432
# Memorystore for Redis with in-transit encryption listens on 6378 only
# (cloud.google.com/memorystore/docs/redis/enabling-in-transit-encryption).
REDIS_TLS_PORT = 6378
