"""Google endpoints the services call by default: the settings models import them without
importing the clients, since the synth validates every service's env with those models."""

# cloud.google.com/storage/docs/json_api: the JSON API's endpoint; tests point it at a stand-in.
STORAGE_URL = "https://storage.googleapis.com"
