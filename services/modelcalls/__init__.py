"""What the orchestrator and the batch worker share: calling the model backends (backends, routing,
refusals), metering the usage they report (usage), charging it to the usage ledger under the daily
quota (ledger, database) and the settings of all that (settings). In both services' images."""
