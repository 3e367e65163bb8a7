"""Every IAM role the constructs and stacks grant, named once (cloud.google.com/iam/docs/understanding-roles)."""

from __future__ import annotations

# Run time: what every Cloud Run service's identity does, writing logs and metrics.
LOG_WRITER = "roles/logging.logWriter"
METRIC_WRITER = "roles/monitoring.metricWriter"
MONITORING_VIEWER = "roles/monitoring.viewer"

# Calling: a Cloud Run service, a model on Vertex AI, an app behind Identity-Aware Proxy.
INVOKER = "roles/run.invoker"
VERTEX_AI_USER = "roles/aiplatform.user"
IAP_ACCESSOR = "roles/iap.httpsResourceAccessor"

SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"

# Pub/Sub: sending to a topic, pulling from a subscription.
PUBLISHER = "roles/pubsub.publisher"
SUBSCRIBER = "roles/pubsub.subscriber"

# Cloud Storage objects.
OBJECT_ADMIN = "roles/storage.objectAdmin"
OBJECT_CREATOR = "roles/storage.objectCreator"
OBJECT_VIEWER = "roles/storage.objectViewer"

# What a client needs to log in with IAM database authentication: cloudsql.instances.login, in
# roles/cloudsql.instanceUser. roles/cloudsql.client (cloudsql.instances.connect) is for the Cloud
# SQL Auth Proxy and connectors, which the services do not use: they connect to the private IP
# directly (cloud.google.com/sql/docs/postgres/iam-logins, "Before you begin").
DATABASE_LOGIN = "roles/cloudsql.instanceUser"

# The least a node needs: GKE's own node role, and reading the images it pulls, granted on each
# repository it pulls from rather than on every repository of the project
# (cloud.google.com/kubernetes-engine/docs/how-to/service-accounts#default-gke-service-agent;
# registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/artifact_registry_repository_iam).
GKE_NODE = "roles/container.defaultNodeServiceAccount"
IMAGE_READER = "roles/artifactregistry.reader"

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"

# BigQuery: a log sink's writer identity streams into its dataset
# (cloud.google.com/logging/docs/export/configure_export_v2#dest-auth).
BIGQUERY_DATA_EDITOR = "roles/bigquery.dataEditor"
