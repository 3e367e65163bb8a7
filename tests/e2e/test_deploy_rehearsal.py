"""Deploy rehearsal: dev as synthesized, run here (devtools/local_chain.py). Each service is
started by its image's command with exactly the environment the synthesized Cloud Run spec
declares; only Google's endpoints are stand-ins. If a stack forgot a setting a service needs,
or wired one wrong, a service here would not start or the chat request would not get through."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from analysis.observability import Scrape, problems, references
from devtools.batch_chain import batch_chain
from devtools.browser import launch
from devtools.harness import certificate_authority, free_port, wait_for
from devtools.local_chain import LocalChain, caller_check, database_host, run_job, service_process
from devtools.standins.identity_platform import user_id

ROOT = Path(__file__).resolve().parents[2]
# The scrape the seam check read; `make dashboards` reads it too.
METRICS_ARTIFACT = ROOT / "test-artifacts" / "rehearsal-metrics.prom"
MONITORING_FIXTURES = ROOT / "tests" / "fixtures" / "monitoring"


# The local chain it runs on (tests/conftest.py's ``chain``): local_chain's keyword arguments.
# dev as it deploys, nothing overridden; the chat page's tests run on the same chain.
CHAIN: dict[str, object] = {}


def test_each_service_runs_with_exactly_the_synthesized_environment(chain: LocalChain) -> None:
    spec = chain["spec"]
    for role, declared in spec.services().items():
        started = chain["environments"][role]
        assert set(started) == set(declared.env) | set(declared.secrets), role
        for name, value in started.items():
            assert "${" not in value, f"{role}: {name} still holds a Terraform reference"
            if name in declared.env and value != declared.env[name]:
                # Only Google's side moved: URLs and addresses, to their local counterparts, and
                # Cloud SQL's server CA, to the one that issued the stand-in's certificate.
                local = "127.0.0.1" in value or database_host() in value or value == chain["database_ca"]
                assert local, f"{role}: {name} changed: {value}"
    # Settings nothing on Google's side touches arrive as the stack wrote them.
    assert chain["environments"]["gateway"]["JWT_ISSUER"] == "https://securetoken.google.com/replace-me-dev"
    assert chain["environments"]["orchestrator"]["DATABASE_AUTH"] == "iam"
    # The orchestrator verifies Cloud SQL's certificate against the instance's server CA.
    assert chain["environments"]["orchestrator"]["PGSSLMODE"] == "verify-ca"
    assert chain["environments"]["orchestrator"]["DATABASE_SERVER_CA"] == chain["database_ca"]


def test_the_gateway_dials_the_orchestrators_internal_load_balancer(chain: LocalChain) -> None:
    # dev's connector mode (docs/network-egress.md): the spec names the load balancer's private
    # address, which stands for the orchestrator here as its run.app URLs do; the ID token's
    # audience stays the run.app URL the orchestrator checks.
    declared = chain["spec"].services()["gateway"].env
    assert declared["ORCHESTRATOR_URL"] == "http://10.10.15.249"
    assert declared["ORCHESTRATOR_AUDIENCE"].endswith(".us-central1.run.app")
    started = chain["environments"]
    assert started["gateway"]["ORCHESTRATOR_URL"] == chain["orchestrator"]
    assert started["gateway"]["ORCHESTRATOR_AUDIENCE"] == started["orchestrator"]["CALLER_AUDIENCE"]


def test_one_chat_request_crosses_frontend_gateway_orchestrator_and_model(chain: LocalChain) -> None:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(chain["frontend"])
        page.get_by_label("Email or user name").fill("rehearsal@example.com")
        page.get_by_label("Password").fill(chain["password"])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Message").fill("Does the deployed chain answer?")
        page.get_by_label("Message").press("Enter")
        expect(page.locator("#messages li.assistant").last).to_have_text("Hello from the stand-in.", timeout=15_000)
        browser.close()

    user = user_id("rehearsal@example.com")
    with psycopg.connect(chain["conninfo"]) as conn:
        deadline = time.monotonic() + 10
        while (
            not (
                rows := conn.execute(
                    "SELECT model, outcome, prompt_tokens, completion_tokens FROM usage_ledger WHERE user_id = %s",
                    (user,),
                ).fetchall()
            )
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert rows == [(chain["model"], "completed", 5, 5)]


def test_the_orchestrator_serves_the_gateways_token_and_refuses_any_other_caller(chain: LocalChain) -> None:
    """The check is on as deployed: the chat above came through with the gateway's ID token
    (minted by its metadata server for the orchestrator's URL, checked against the stand-in's
    keys); a caller without it, or with another account's, is refused."""
    orchestrator, env = chain["orchestrator"], chain["environments"]["orchestrator"]
    assert caller_check(env).startswith("on: ")
    assert env["ALLOWED_CALLERS"] == chain["spec"].services()["gateway"].service_account
    body = {"model": chain["model"], "messages": [{"role": "user", "content": "hi"}]}
    user = {"x-user-id": "rehearsal-intruder"}
    no_token = httpx.post(f"{orchestrator}/v1/chat/completions", json=body, headers=user)
    assert (no_token.status_code, no_token.json()["error"]["code"]) == (401, "invalid_token")
    # The frontend's account, minted for the orchestrator's URL by its own metadata server: a valid
    # Google ID token, of the wrong caller.
    frontend = chain["identities"]["frontend"]
    token = httpx.get(
        f"{frontend.url}/computeMetadata/v1/instance/service-accounts/default/identity",
        params={"audience": env["CALLER_AUDIENCE"], "format": "full"},
        headers={"Metadata-Flavor": "Google"},
    ).text
    other = httpx.post(
        f"{orchestrator}/v1/chat/completions", json=body, headers={**user, "authorization": f"Bearer {token}"}
    )
    assert (other.status_code, other.json()["error"]["code"]) == (403, "caller_not_allowed")
    assert httpx.get(f"{orchestrator}/health").status_code == 200
    # The gateway's own calls carried its token for that same audience.
    assert env["CALLER_AUDIENCE"] in chain["identities"]["gateway"].server.config.app.state.audiences


def test_the_orchestrator_logs_in_as_its_iam_user_over_tls_and_owns_its_ledger(chain: LocalChain) -> None:
    iam_user = chain["environments"]["orchestrator"]["PGUSER"]
    with psycopg.connect(chain["conninfo"]) as conn:
        sessions = conn.execute(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = %s", (iam_user,)
        ).fetchall()
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'usage_ledger'").fetchone()
    assert sessions and all(ssl for (ssl,) in sessions)
    # The bootstrap job granted it schema public; its own migrations made the table.
    assert owner == (iam_user,)


def test_a_database_server_whose_certificate_another_ca_issued_is_refused(chain: LocalChain) -> None:
    """The bootstrap job as synthesized, told another CA than the one that issued the stand-in's
    certificate (a server posing as Cloud SQL), gives the admin's password to no one."""
    ((job, env),) = chain["jobs"].values()
    assert env["PGSSLMODE"] == "verify-ca"
    with pytest.raises(RuntimeError, match="certificate verify failed"):
        run_job(job, {**env, "DATABASE_SERVER_CA": certificate_authority()[1]})
    run_job(job, env)  # and with the instance's own CA it connects (and changes nothing)


def test_the_gateway_admits_the_chat_page_and_no_other_origin(chain: LocalChain) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{chain['gateway']}/v1/chat/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    assert preflight(chain["frontend"]).headers.get("access-control-allow-origin") == chain["frontend"]
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers


def test_a_service_missing_a_setting_would_not_start(chain: LocalChain, tmp_path: Path) -> None:
    """The rehearsal's guard: the gateway as synthesized, but without its issuer, fails to start."""
    gateway = chain["spec"].services()["gateway"]
    env = {key: value for key, value in chain["environments"]["gateway"].items() if key != "JWT_ISSUER"}
    with (
        pytest.raises(RuntimeError, match="gateway did not start"),
        service_process(gateway, free_port(), env, tmp_path / "gateway.log"),
    ):
        pass


@pytest.fixture(scope="module")
def worker_scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The batch worker's /metrics, as its image runs it, after a batch of a line that succeeds
    and one that fails. The rehearsal's chain runs no worker: devtools/batch_chain.py's does."""
    lines = [
        {"custom_id": f"line-{model}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        for model in ("standin-echo", "no-such-model")
        for body in [{"model": model, "messages": [{"role": "user", "content": "hello"}]}]
    ]
    with batch_chain(tmp_path_factory.mktemp("worker")) as batches:
        client = openai.OpenAI(base_url=f"{batches.gateway_url}/v1", api_key=batches.token, max_retries=0)
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        upload = client.files.create(file=("lines.jsonl", data), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert wait_for(lambda: client.batches.retrieve(batch.id).status == "completed", timeout=120)
        return httpx.get(batches.worker_metrics[0]).text


def scraped_after_traffic(chain: LocalChain, worker: str) -> str:
    """Each service's /metrics, after a chat through the gateway, a refused token and a caller
    the orchestrator refuses, and the worker's (``worker``); saved to METRICS_ARTIFACT."""
    token = chain["issuer"].token(user_id("seam@example.com"), email="seam@example.com")
    body = {"model": chain["model"], "messages": [{"role": "user", "content": "metrics, please"}]}
    chat = f"{chain['gateway']}/v1/chat/completions"
    assert httpx.post(chat, json=body, headers={"authorization": f"Bearer {token}"}, timeout=30).status_code == 200
    assert httpx.post(chat, json=body, headers={"authorization": "Bearer not.a.token"}).status_code == 401
    assert httpx.post(f"{chain['orchestrator']}/v1/chat/completions", json=body).status_code == 401
    time.sleep(0.5)  # the gateway counts a request once its answer has gone
    text = "".join(httpx.get(url).text for url in chain["metrics"].values()) + worker
    METRICS_ARTIFACT.parent.mkdir(exist_ok=True)
    METRICS_ARTIFACT.write_text(text)
    return text


def test_every_metric_and_label_the_monitoring_names_is_one_a_running_service_emitted(
    chain: LocalChain, worker_scrape: str
) -> None:
    """The seam: dashboards, alert policies and SLOs as synthesized name only metrics and labels
    the services emitted here, after real traffic, or Google's and vLLM's documented ones."""
    assert set(chain["metrics"]) == {"gateway", "orchestrator"}
    scrape = Scrape.parse(scraped_after_traffic(chain, worker_scrape))
    assert 'worker_lines_total{outcome="done"} 1.0' in worker_scrape
    assert 'worker_lines_total{outcome="failed"} 1.0' in worker_scrape
    assert "worker_finalize_seconds_count 1.0" in worker_scrape
    assert 'gateway_requests_total{route="/v1/chat/completions",status="200"}' in METRICS_ARTIFACT.read_text()
    assert {"model", "backend", "le"} <= scrape.samples["orchestrator_ttft_seconds_bucket"]
    assert scrape.samples["gateway_auth_failures_total"] == {"reason"}
    found = [reference for stack in chain["spec"].stacks.values() for reference in references(stack)]
    assert problems(found, scrape) == []
    # The fixtures' dashboard, alert and SLO (our three services', Google's and vLLM's metrics)
    # pass against this scrape; a misspelt metric or label fails.
    assert problems(references(json.loads((MONITORING_FIXTURES / "monitoring.json").read_text())), scrape) == []
    for fixture, misspelt in (
        ("misspelt_metric.json", "orchestrator_ttfb_seconds_bucket"),
        ("misspelt_label.json", "status_code"),
    ):
        failed = problems(references(json.loads((MONITORING_FIXTURES / fixture).read_text())), scrape)
        assert any(misspelt in problem for problem in failed), failed


def test_metrics_are_not_served_on_the_public_ports(chain: LocalChain) -> None:
    for role in ("gateway", "orchestrator"):
        assert httpx.get(f"{chain[role]}/metrics").status_code == 404, role
    assert httpx.get(chain["metrics"]["gateway"]).status_code == 200
