"""Batch files (/v1/files): what an upload must be to be stored, NUL characters refused where
PostgreSQL cannot store them, and a user's files listed and deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from batch_helpers import (  # noqa: F401 - fixtures
    BUCKET,
    NUL,
    Query,
    batch_gateway,
    batch_orchestrator,
    client,
    counts,
    db,
    finish_as_a_worker,
    jsonl,
    multipart_upload,
    new_user,
    queue,
    request_line,
    small_gateway,
    upload,
)
from devtools.harness import ServedIssuer, Server

MALFORMED = {
    "bad JSON on line 3": (
        jsonl(request_line("a"), request_line("b")) + b'{"custom_id": "c", \n',
        "line 3: Invalid JSON",
    ),
    "no custom_id": (
        jsonl(request_line("a"), {k: v for k, v in request_line("b").items() if k != "custom_id"}),
        "line 2: custom_id: Field required",
    ),
    "a duplicate custom_id": (
        jsonl(request_line("a"), request_line("b"), request_line("a")),
        "line 3: custom_id: the same as line 1's",
    ),
    "a body the chat route refuses": (
        jsonl(request_line("a", temperature=3)),
        "line 1: body.temperature: Input should be less than or equal to 2",
    ),
    "an empty messages list": (
        jsonl({**request_line("a"), "body": {"model": "standin-echo", "messages": []}}),
        "line 1: body.messages: List should have at least 1 item",
    ),
    "a streaming line": (jsonl(request_line("a"), request_line("b", stream=True)), "line 2: body.stream"),
    "another endpoint": (jsonl({**request_line("a"), "url": "/v1/embeddings"}), "line 1: url: Input should be"),
    "GET": (jsonl({**request_line("a"), "method": "GET"}), "line 1: method: Input should be 'POST'"),
    "a line that is not an object": (jsonl(request_line("a")) + b"[1, 2]\n", "line 2: Input should be an object"),
    "an empty custom_id": (jsonl(request_line("")), "line 1: custom_id: String should have at least 1 character"),
    "too many lines": (jsonl(*(request_line(str(n)) for n in range(4))), "more than 3 lines"),
    "a line longer than a chat request may be": (
        jsonl(request_line("a", "x" * 1100)),
        "line 1: longer than 1024 bytes",
    ),
    "bytes that are not UTF-8": (jsonl(request_line("a")) + b'{"custom_id": "\xff\xfe"}\n', "line 2: not UTF-8"),
    "a blank line inside": (jsonl(request_line("a")) + b"\n" + jsonl(request_line("b")), "line 2: empty"),
    "an unknown field": (jsonl({**request_line("a"), "priority": 1}), "line 1: priority: Extra inputs"),
    "an empty file": (b"", "the file has no lines"),
    "only blank lines": (b"\n\r\n\n", "the file has no lines"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_refused_naming_the_line_and_nothing_is_stored(
    small_gateway: Server, issuer: ServedIssuer, db: Query, gcs: Server, case: str
) -> None:
    data, message = MALFORMED[case]
    user = new_user()
    objects_before = len(gcs.app.state.objects)
    with pytest.raises(openai.BadRequestError) as refused:
        client(small_gateway, issuer, user).files.create(file=("bad.jsonl", data), purpose="batch")
    assert message in refused.value.message, refused.value.message
    assert refused.value.code == "invalid_file"
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []
    assert len(gcs.app.state.objects) == objects_before


def test_a_file_over_the_size_bound_is_413_and_not_stored(
    small_gateway: Server, issuer: ServedIssuer, db: Query, gcs: Server
) -> None:
    user = new_user()
    objects_before = len(gcs.app.state.objects)
    big = jsonl(request_line("a", "x" * 600), request_line("b", "y" * 600), request_line("c", "z" * 600))
    big += b" " * (4097 - len(big))  # trailing blanks still count toward the file's size
    answer = upload(small_gateway, issuer.token(user), big)
    assert answer.status_code == 413 and "4096 bytes" in answer.json()["error"]["message"]
    endless = upload(small_gateway, issuer.token(user), b"x" * 100_000)  # beyond the envelope: not even parsed
    assert endless.status_code == 413
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []
    assert len(gcs.app.state.objects) == objects_before


def test_crlf_endings_and_trailing_blank_lines_are_accepted(
    small_gateway: Server, issuer: ServedIssuer, db: Query
) -> None:
    user = new_user()
    api = client(small_gateway, issuer, user)
    data = jsonl(request_line("a"), request_line("b"), ending=b"\r\n") + b"\r\n\n"
    uploaded = api.files.create(file=("crlf.jsonl", data), purpose="batch")
    assert uploaded.bytes == len(data)
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert counts(batch).total == 2
    assert [
        r["custom_id"] for r in db("SELECT custom_id FROM batch_lines WHERE batch_id = %s ORDER BY line", batch.id)
    ] == ["a", "b"]


@pytest.mark.parametrize(
    ("send", "message"),
    [
        (lambda url, auth: httpx.post(url, headers=auth, json={"purpose": "batch"}), "multipart/form-data"),
        (lambda url, auth: httpx.post(url, headers=auth, files={"purpose": (None, "batch")}), "no file"),
        (
            lambda url, auth: httpx.post(
                url, headers=auth, files={"file": ("a.jsonl", b"{}")}, data={"purpose": "fine-tune"}
            ),
            "purpose: only 'batch'",
        ),
        (lambda url, auth: httpx.post(url, headers=auth, files={"file": ("a.jsonl", b"{}")}), "purpose: only 'batch'"),
        (
            lambda url, auth: httpx.post(
                url, headers={**auth, "content-type": "multipart/form-data; boundary=xyz"}, content=b"--xyz\r\ngarbage"
            ),
            "",
        ),
    ],
    ids=["json body", "no file", "another purpose", "no purpose", "broken multipart"],
)
def test_an_upload_that_is_not_a_batch_file_is_refused(
    small_gateway: Server, issuer: ServedIssuer, send: Callable[[str, dict[str, str]], httpx.Response], message: str
) -> None:
    answer = send(f"{small_gateway.url}/v1/files", {"authorization": f"Bearer {issuer.token(new_user())}"})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]


NUL_IN_A_LINE = {
    "the content": (jsonl(request_line("a"), request_line("b", f"x{NUL}y")), "line 2: body.messages[0].content"),
    "the custom_id": (jsonl(request_line(f"a{NUL}")), "line 1: custom_id"),
    "a stop string": (jsonl(request_line("a", stop=["ok", NUL])), "line 1: body.stop[1]"),
    "the user": (jsonl(request_line("a", user=NUL)), "line 1: body.user"),
}


@pytest.mark.parametrize("case", NUL_IN_A_LINE)
def test_a_nul_character_in_a_line_is_refused_at_upload_naming_the_line_and_field(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, case: str
) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: a line with one could never become a batch."""
    data, where = NUL_IN_A_LINE[case]
    user = new_user()
    with pytest.raises(openai.BadRequestError) as refused:
        client(batch_gateway, issuer, user).files.create(file=("nul.jsonl", data), purpose="batch")
    assert f"{where}: must not contain the NUL character" in refused.value.message, refused.value.message
    assert refused.value.code == "invalid_file"
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []


def test_a_nul_character_in_the_file_name_is_refused(batch_gateway: Server, issuer: ServedIssuer, db: Query) -> None:
    user = new_user()
    headers, body = multipart_upload(jsonl(request_line("a")), filename=f"in{NUL}.jsonl")
    answer = httpx.post(
        f"{batch_gateway.url}/v1/files",
        headers={"authorization": f"Bearer {issuer.token(user)}", **headers},
        content=body,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith("file: its name must not contain the NUL character")
    assert db("SELECT id FROM batch_files WHERE user_id = %s", user) == []


def test_a_nul_character_in_a_batchs_metadata_is_refused(
    batch_gateway: Server, issuer: ServedIssuer, db: Query
) -> None:
    user = new_user()
    api = client(batch_gateway, issuer, user)
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    for metadata, param in [({"k": f"v{NUL}"}, "metadata.k"), ({f"k{NUL}": "v"}, f"metadata.k{NUL}.[key]")]:
        with pytest.raises(openai.BadRequestError) as refused:
            api.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata
            )
        assert "must not contain the NUL character" in refused.value.message
        assert refused.value.param == param
    assert db("SELECT id FROM batches WHERE user_id = %s", user) == []


def test_a_stored_file_with_a_nul_character_is_refused_at_batch_creation_naming_the_line(
    batch_gateway: Server, batch_orchestrator: Server, issuer: ServedIssuer, db: Query
) -> None:
    """A file stored before the gateway refused NUL: its batch is a 400 naming the line, never a 500."""
    user = new_user()
    stored = httpx.post(
        f"{batch_orchestrator.url}/v1/files",
        params={"purpose": "batch", "filename": "old.jsonl"},
        headers={"x-user-id": user, "content-type": "application/jsonl"},
        content=jsonl(request_line("a"), request_line(f"b{NUL}")),
    )
    assert stored.status_code == 200, stored.text
    with pytest.raises(openai.BadRequestError) as refused:
        client(batch_gateway, issuer, user).batches.create(
            input_file_id=stored.json()["id"], endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "line 2: custom_id: must not contain the NUL character" in refused.value.message
    assert refused.value.param == "input_file_id"
    assert db("SELECT id FROM batches WHERE user_id = %s", user) == []


def test_the_openai_client_lists_a_users_files_newest_first_by_purpose_a_page_at_a_time(
    batch_gateway: Server, issuer: ServedIssuer, db: Query, gcs: Server
) -> None:
    user = new_user()
    api = client(batch_gateway, issuer, user)
    inputs = [api.files.create(file=(f"q{n}.jsonl", jsonl(request_line("a"))), purpose="batch").id for n in range(3)]
    batch = api.batches.create(input_file_id=inputs[0], endpoint="/v1/chat/completions", completion_window="24h")
    output = finish_as_a_worker(db, gcs.url, batch.id, user)

    newest_first = [inputs[2], inputs[1], inputs[0]]
    assert [f.id for f in api.files.list()] == [output, *newest_first]
    assert [f.id for f in api.files.list(purpose="batch")] == newest_first
    assert [f.id for f in api.files.list(purpose="batch_output")] == [output]
    assert [f.id for f in api.files.list(purpose="batch", order="asc")] == newest_first[::-1]
    first = api.files.list(purpose="batch", limit=2)
    assert [f.id for f in first.data] == newest_first[:2] and first.has_more
    assert [f.id for f in api.files.list(purpose="batch", limit=2)] == newest_first  # the client pages on
    assert api.files.list(limit=1).data[0].model_dump() == api.files.retrieve(output).model_dump()
    assert list(client(batch_gateway, issuer, new_user()).files.list()) == []  # another user's files are not listed

    refusals: list[tuple[dict[str, Any], str, str]] = [
        ({"purpose": "fine-tune"}, "purpose", "'batch' or 'batch_output'"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"order": "up"}, "order", "'asc' or 'desc'"),
        ({"after": "../x"}, "after", "file-"),
    ]
    for query, param, allowed in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            api.files.list(**query)
        assert refused.value.param == param and allowed in refused.value.message, refused.value.message


def test_only_its_owner_deletes_a_file_which_removes_its_object(
    batch_gateway: Server, issuer: ServedIssuer, gcs: Server
) -> None:
    alice, bob = client(batch_gateway, issuer, new_user()), client(batch_gateway, issuer, new_user())
    uploaded = alice.files.create(file=("mine.jsonl", jsonl(request_line("a"))), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(uploaded.id)
    assert (BUCKET, f"inputs/{uploaded.id}.jsonl") in gcs.app.state.objects

    deleted = alice.files.delete(uploaded.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
    assert (BUCKET, f"inputs/{uploaded.id}.jsonl") not in gcs.app.state.objects
    assert list(alice.files.list()) == []
    for gone in (alice.files.retrieve, alice.files.content, alice.files.delete):
        with pytest.raises(openai.NotFoundError):
            gone(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        alice.files.delete("not-a-file-id")


def test_a_file_an_unfinished_batch_uses_may_be_deleted_and_the_batch_runs_on(
    batch_gateway: Server, issuer: ServedIssuer, db: Query
) -> None:
    """The batch's lines were copied into the database when it was made: it does not need the
    file, and keeps its input_file_id, which is then not found, as OpenAI's is."""
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"), request_line("b"))), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert api.files.delete(uploaded.id).deleted
    still = api.batches.retrieve(batch.id)
    assert (still.status, still.input_file_id, counts(still).total) == ("in_progress", uploaded.id, 2)
    assert len(db("SELECT line FROM batch_lines WHERE batch_id = %s AND status = 'queued'", batch.id)) == 2
    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_a_file_whose_object_went_away_is_not_found_for_a_new_batch(
    batch_gateway: Server, issuer: ServedIssuer, gcs: Server
) -> None:
    """A delete removes the object, then the row: a batch made in between finds no file (404), not a 503."""
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    del gcs.app.state.objects[(BUCKET, f"inputs/{uploaded.id}.jsonl")]
    with pytest.raises(openai.NotFoundError) as absent:
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert uploaded.id in absent.value.message
