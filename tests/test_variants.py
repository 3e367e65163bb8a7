"""The typed variants the stack tests build (tests/variants.py) are checked as files are, and
written out they read back as the same settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hybrid.config import ConfigError, parse_environment
from iac import DEV_CLOUD_RUN
from variants import DEV_ENV, DEV_ON_CLOUD_RUN, toml_text, variant, write_environment


def test_a_variant_is_validated_like_a_loaded_file() -> None:
    with pytest.raises(ConfigError) as refused:
        variant(DEV_ON_CLOUD_RUN, {"network.run_cidr": "10.8.0.0/27"})
    assert refused.value.lines == [
        "network.run_cidr = '10.8.0.0/27': must be a /26 or larger for Cloud Run's Direct VPC egress",
        "network.run_cidr = '10.8.0.0/27': must have 80 usable addresses, two per instance of the gateway's and "
        "orchestrator's max_instances, twice over for a rollout's old and new revisions; it has 28",
    ]
    # The service contract too, which the settings models alone do not check.
    with pytest.raises(ConfigError, match=r"services\.gateway\.env\.RATE_LIMIT: unknown setting"):
        variant(DEV_ENV, {"services.gateway.env": {"RATE_LIMIT": "5"}})


def test_a_variant_changes_what_it_names_and_nothing_else() -> None:
    renamed = variant(DEV_ENV, {"name": "blue", "network.connector_cidr": "10.8.1.0/28"})
    assert (renamed.name, renamed.names.cluster, str(renamed.network.connector_cidr)) == (
        "blue",
        "blue-models",
        "10.8.1.0/28",
    )
    assert renamed.model_copy(update={"name": "dev", "network": DEV_ENV.network}) == DEV_ENV


def test_an_unknown_key_is_an_error_not_a_silent_extra() -> None:
    with pytest.raises(KeyError, match="NetworkSettings has no setting 'run_cdr'"):
        variant(DEV_ENV, {"network.run_cdr": "10.8.0.0/24"})


def test_the_text_base_of_the_bad_file_cases_is_the_typed_cloud_run_variant() -> None:
    assert parse_environment(tomllib.loads(DEV_CLOUD_RUN)) == DEV_ON_CLOUD_RUN


def test_written_variants_read_back_the_same(tmp_path: Path) -> None:
    labelled = variant(DEV_ON_CLOUD_RUN, {"labels": {"team": "ai"}, "cluster.authorized_networks": []})
    write_environment(labelled, tmp_path / "dev.toml")  # it checks the read-back itself
    data = {"a": {"key with space": 'say "hi"\n', "empty": {}, "list": [0.5, True]}}
    assert tomllib.loads(toml_text(data)) == data
