// The batch page: upload a JSONL file, start a batch on it, watch its progress, cancel it, and
// download its output and error files, through the gateway's Batch API routes (the ones the
// openai client calls), with the session the chat page signed in. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "chat.token";  // the chat page's session (sessionStorage, this origin only)
const REFRESH_MS = 2000;
const ENDED = new Set(["completed", "failed", "expired", "cancelled"]);
const state = { gateway: "", timer: null, statuses: new Map() };

async function start() {
  state.gateway = (await (await fetch("/config.json")).json()).gatewayUrl;
  if (!sessionStorage.getItem(TOKEN_KEY)) { signedOut(); return; }
  $("batch-work").hidden = false;
  $("upload-form").addEventListener("submit", (event) => { event.preventDefault(); uploadAndStart(); });
  $("batch-file").focus();
  await refresh();
}

function signedOut() {
  $("batch-work").hidden = true;
  $("signed-out").hidden = false;
  $("signed-out").querySelector("a").focus();
}

// A call to the gateway with the user's token; a 401 ends the session here as on the chat page.
async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body && !(body instanceof FormData)) headers["Content-Type"] = "application/json";
  const response = await fetch(state.gateway + path, {
    method, headers, body: body && !(body instanceof FormData) ? JSON.stringify(body) : body,
  });
  if (response.status === 401) { sessionStorage.removeItem(TOKEN_KEY); signedOut(); throw new ApiFailure(""); }
  if (!response.ok) throw new ApiFailure(await reason(response));
  return response;
}

class ApiFailure extends Error {}

// The API's own words (OpenAI's error shape): for a bad file they name the line and the field.
async function reason(response) {
  try {
    const message = (await response.json()).error.message;
    if (message) return message;
  } catch (_) { /* not JSON */ }
  if (response.status === 429) return "Too many requests. Please wait a moment and try again.";
  return `The batch service is unavailable right now (error ${response.status}). Please try again shortly.`;
}

function notice(text) {
  $("batch-notice").textContent = text;
  if (text) $("batch-notice").focus();
}

async function uploadAndStart() {
  const file = $("batch-file").files[0];
  if (!file) { notice("Choose a JSONL file first."); return; }
  $("upload").disabled = true;
  notice("");
  try {
    const form = new FormData();
    form.append("purpose", "batch");
    form.append("file", file);
    const uploaded = await (await api("POST", "/v1/files", form)).json();
    const batch = await (await api("POST", "/v1/batches", {
      input_file_id: uploaded.id, endpoint: "/v1/chat/completions", completion_window: "24h",
    })).json();
    $("upload-form").reset();
    await refresh();
    const row = document.getElementById(batch.id);
    if (row) row.focus();
  } catch (error) {
    if (error instanceof ApiFailure) { if (error.message) notice("The file was not accepted: " + error.message); }
    else notice("The batch service could not be reached. Check your connection and try again.");
  } finally {
    $("upload").disabled = false;
  }
}

async function refresh() {
  clearTimeout(state.timer);
  let batches;
  try {
    batches = (await (await api("GET", "/v1/batches?limit=20")).json()).data;
  } catch (error) {
    if (!(error instanceof ApiFailure)) notice("The batch service could not be reached. Retrying…");
    else if (error.message) notice(error.message);
    if (sessionStorage.getItem(TOKEN_KEY)) state.timer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  render(batches);
  if (batches.some((batch) => !ENDED.has(batch.status))) state.timer = setTimeout(refresh, REFRESH_MS);
}

function render(batches) {
  $("no-batches").hidden = batches.length > 0;
  // The list is drawn anew each refresh; whatever had the focus (a row, a button) gets it back.
  const focused = document.activeElement && document.activeElement.dataset.keep;
  const list = $("batches");
  list.replaceChildren(...batches.map(row));
  if (focused) { const again = list.querySelector(`[data-keep="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  announce(batches);
}

// The list itself is not a live region (it is redrawn every refresh); a batch's change of status
// is said once, politely.
function announce(batches) {
  const changed = batches.filter((batch) => state.statuses.has(batch.id) && state.statuses.get(batch.id) !== batch.status);
  for (const batch of batches) state.statuses.set(batch.id, batch.status);
  if (changed.length) $("batch-status").textContent = changed.map((b) => `Batch ${b.id} is ${b.status}.`).join(" ");
}

function row(batch) {
  const counts = batch.request_counts || { total: 0, completed: 0, failed: 0 };
  const done = counts.completed + counts.failed;
  const item = document.createElement("li");
  item.id = batch.id;
  item.tabIndex = -1;
  item.dataset.keep = "row:" + batch.id;
  item.className = "batch " + batch.status;
  item.setAttribute("aria-label", `Batch ${batch.id}, ${batch.status}`);

  const title = document.createElement("p");
  title.className = "batch-title";
  const name = document.createElement("code");
  name.textContent = batch.id;
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = batch.status;
  title.append(name, " ", status);

  const label = `${done} of ${counts.total} lines done` + (counts.failed ? `, ${counts.failed} failed` : "");
  const progress = document.createElement("progress");
  progress.max = Math.max(counts.total, 1);
  progress.value = done;
  progress.setAttribute("aria-label", `Progress of ${batch.id}`);
  progress.setAttribute("aria-valuetext", label);
  const caption = document.createElement("p");
  caption.className = "help";
  caption.textContent = label;

  const actions = document.createElement("p");
  actions.className = "actions";
  if (!ENDED.has(batch.status) && batch.status !== "cancelling") {
    actions.append(button(`Cancel ${batch.id}`, "Cancel", "cancel:" + batch.id, () => cancel(batch.id)));
  }
  if (batch.output_file_id) {
    actions.append(button(`Download output of ${batch.id}`, "Download output", "out:" + batch.id,
      () => download(batch.output_file_id, `${batch.id}-output.jsonl`)));
  }
  if (batch.error_file_id) {
    actions.append(button(`Download errors of ${batch.id}`, "Download errors", "err:" + batch.id,
      () => download(batch.error_file_id, `${batch.id}-errors.jsonl`)));
  }
  item.append(title, progress, caption, actions);
  return item;
}

function button(label, text, keep, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.dataset.keep = keep;
  element.addEventListener("click", onClick);
  return element;
}

async function cancel(batchId) {
  try {
    await api("POST", `/v1/batches/${encodeURIComponent(batchId)}/cancel`);
    await refresh();
    const row = document.getElementById(batchId);
    if (row) row.focus();
  } catch (error) {
    if (!(error instanceof ApiFailure)) notice("The batch service could not be reached. Try again.");
    else if (error.message) notice(error.message);
  }
}

// The file comes through the gateway with the user's token, so a plain link cannot fetch it:
// it is read here and handed to the browser as a download.
async function download(fileId, name) {
  try {
    const blob = await (await api("GET", `/v1/files/${encodeURIComponent(fileId)}/content`)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    if (!(error instanceof ApiFailure)) notice("The file could not be downloaded. Try again.");
    else if (error.message) notice(error.message);
  }
}

start();
