"""OpenAI's Batch API, the orchestrator's side: files and batches stored in the ledger's database
and the environment's bucket, one Pub/Sub message per line for the workers (services.worker)."""
