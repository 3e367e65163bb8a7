"""The orchestrator's routes but the batch ones (services.orchestrator.batch.routes)."""
