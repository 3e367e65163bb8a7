"""The services' own code, one package each (services.gateway, services.orchestrator,
services.frontend) and services.servicekit, what they share."""
