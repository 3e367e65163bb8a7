"""The batch worker: pulls batch lines from Pub/Sub, runs each once against the model backends, writes the batch's files."""
