// The chat page: sign in, pick a model, send messages to the gateway, render streamed answers
// as Markdown as they arrive, stop them, show the day's quota, keep conversations in this
// browser, and say in plain words what went wrong. No framework, no build step.
import { enableCopy, render } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "chat.token";
const CONVERSATIONS_KEY = "chat.conversations.";
// The conversation sent is bounded by the model's context length, in tokens estimated as the
// platform's own quota estimate does (services/modelcalls/usage.py): four characters a token,
// plus a few for each message's framing, keeping room for the answer.
const CHARS_PER_TOKEN = 4;
const TOKENS_PER_MESSAGE = 4;
const ANSWER_TOKENS = 1024;
// After an answer the ledger writes its outcome in the background: the usage is read again
// until no request of the user's holds a reservation.
const USAGE_RETRIES = 10;
const USAGE_RETRY_MS = 300;
const KINDS = { "self-hosted": "self-hosted", vertex: "Vertex AI" };
const state = { config: null, user: "", models: [], store: { items: [], current: null }, busy: false, controller: null };
const number = (n) => n.toLocaleString("en");

async function start() {
  state.config = await (await fetch("/config.json")).json();
  $("password-row").hidden = state.config.auth.mode === "dev";
  $("sign-in-form").addEventListener("submit", signIn);
  $("compose").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.busy) stop(); });
  $("stop").addEventListener("click", stop);
  $("sign-out").addEventListener("click", () => showSignIn(""));
  $("new-conversation").addEventListener("click", newConversation);
  $("toggle-conversations").addEventListener("click", () => showConversations(!$("conversations").classList.contains("open")));
  $("model").addEventListener("change", modelChosen);
  $("model-name").addEventListener("change", modelChosen);
  enableCopy($("messages"));
  if (sessionStorage.getItem(TOKEN_KEY)) showChat(); else showSignIn("");
}

// ---- signing in -------------------------------------------------------------------------

function showSignIn(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("sign-in-reason").textContent = reason;
  for (const id of ["chat", "sign-out", "quota", "conversations", "toggle-conversations"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  $("username").focus();
}

function showChat() {
  state.user = tokenSubject(sessionStorage.getItem(TOKEN_KEY));
  state.store = loadConversations();
  $("sign-in").hidden = true;
  for (const id of ["chat", "sign-out", "conversations", "toggle-conversations"]) $(id).hidden = false;
  openConversation(currentConversation());
  loadModels();
  refreshQuota();
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  try {
    const token = state.config.auth.mode === "dev"
      ? await devToken(username)
      : await identityPlatformToken(username, $("password").value);
    sessionStorage.setItem(TOKEN_KEY, token);
    showChat();
  } catch (error) {
    $("sign-in-reason").textContent = "Sign-in failed: " + error.message;
  }
}

async function devToken(username) {
  const response = await fetch("/dev/sign-in", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username }),
  });
  if (!response.ok) throw new Error("that user name is not accepted");
  return (await response.json()).token;
}

async function identityPlatformToken(email, password) {
  const url = state.config.auth.url + "/v1/accounts:signInWithPassword?key="
    + encodeURIComponent(state.config.auth.apiKey);
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password, returnSecureToken: true }),
  });
  if (!response.ok) throw new Error("wrong email or password");
  return (await response.json()).idToken;
}

// Whose conversations these are: the token's subject (Identity Platform's user_id, else sub),
// so two people signing in on one browser do not see each other's.
function tokenSubject(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return String(payload.user_id || payload.sub || "");
  } catch (_) {
    return "";
  }
}

function gateway(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  return fetch(state.config.gatewayUrl + path, { ...options, headers });
}

// ---- models -----------------------------------------------------------------------------

async function loadModels() {
  let models = null;
  try {
    const response = await gateway("/v1/models");
    if (response.status === 401) { showSignIn("Your session has ended. Please sign in again."); return; }
    if (response.ok) models = (await response.json()).data;
  } catch (_) { /* said below */ }
  if (!models || !models.length) {
    notice("The list of models could not be loaded; messages go to the default model.");
    models = [{ id: state.config.model, owned_by: "" }];
  }
  state.models = models;
  const select = $("model");
  select.replaceChildren();
  for (const [kind, label] of Object.entries({ ...KINDS, "": "Other" })) {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const model of models.filter((m) => (KINDS[m.owned_by] ? m.owned_by : "") === kind)) {
      const option = document.createElement("option");
      option.value = model.id;
      const name = isPattern(model) ? model.id.slice(0, -1) + "… (any model under it)" : model.id;
      option.textContent = kind ? `${name} — ${label}` : name;
      group.append(option);
    }
    if (group.children.length) select.append(group);
  }
  showModel(currentConversation().model || state.config.model);
}

const isPattern = (model) => model.id.endsWith("*");

// The listed model (or pattern) that serves ``name``.
function entryFor(name) {
  return state.models.find((m) => m.id === name)
    || state.models.find((m) => isPattern(m) && name.startsWith(m.id.slice(0, -1)));
}

function showModel(name) {
  const entry = entryFor(name) || state.models.find((m) => m.id === state.config.model) || state.models[0];
  if (!entry) return;
  $("model").value = entry.id;
  const prefix = entry.id.slice(0, -1);
  $("model-name-row").hidden = !isPattern(entry);
  if (isPattern(entry)) {
    $("model-name").value = name.startsWith(prefix) && name !== entry.id ? name : prefix;
    $("model-name-help").textContent = `Name a model under ${prefix}.`;
  }
  const where = entry.owned_by === "vertex" ? "Runs on Vertex AI" : entry.owned_by === "self-hosted"
    ? "Self-hosted on the platform's GPUs" : "Where it runs is not known";
  const context = entry.max_model_len
    ? `reads at most ${number(entry.max_model_len)} tokens`
    : "context length not published: the whole conversation is sent";
  $("model-kind").textContent = `${where}; ${context}.`;
  updateContext();
}

function modelChosen() {
  const entry = entryFor($("model").value);
  const conversation = currentConversation();
  conversation.model = isPattern(entry) && this === $("model-name") ? $("model-name").value.trim() : entry.id;
  if (isPattern(entry) && this === $("model")) conversation.model = "";
  saveConversations();
  showModel(conversation.model || entry.id);
}

// The model to send to, or null (and the user told why) when a pattern's model is not named.
function chosenModel() {
  const entry = entryFor($("model").value);
  if (!entry) return state.config.model;
  if (!isPattern(entry)) return entry.id;
  const name = $("model-name").value.trim(), prefix = entry.id.slice(0, -1);
  if (name.startsWith(prefix) && name.length > prefix.length) return name;
  notice(`Name the model to use: one under ${prefix}.`);
  $("model-name").focus();
  return null;
}

// ---- quota ------------------------------------------------------------------------------

async function refreshQuota(attempt = 0) {
  let usage;
  try {
    const response = await gateway("/v1/usage");
    if (response.status === 401) return; // the next message says so
    if (!response.ok) throw new Error(String(response.status));
    usage = await response.json();
  } catch (_) {
    $("quota-text").textContent = "unavailable";
    return;
  }
  const used = usage.used_tokens, quota = usage.quota_tokens;
  $("quota-meter").max = quota;
  $("quota-meter").value = Math.min(used, quota);
  $("quota-text").textContent = `${number(used)} of ${number(quota)} (renews at midnight UTC)`;
  $("quota").hidden = false;
  if (usage.reserved_tokens > 0 && !state.busy && attempt < USAGE_RETRIES) {
    setTimeout(() => refreshQuota(attempt + 1), USAGE_RETRY_MS);
  }
}

// ---- conversations ----------------------------------------------------------------------

function loadConversations() {
  let store;
  try { store = JSON.parse(localStorage.getItem(CONVERSATIONS_KEY + state.user)); } catch (_) { /* fresh */ }
  if (!store || !Array.isArray(store.items)) store = { items: [], current: null };
  store.items = store.items.filter((c) => c.messages.length || c.id === store.current);
  return store;
}

function saveConversations() {
  try {
    localStorage.setItem(CONVERSATIONS_KEY + state.user, JSON.stringify(state.store));
  } catch (_) {
    notice("This browser did not keep the conversation: its storage is full or turned off.");
  }
}

function currentConversation() {
  let conversation = state.store.items.find((c) => c.id === state.store.current);
  if (!conversation) {
    conversation = { id: crypto.randomUUID(), title: "New conversation", model: "", messages: [], updated: Date.now() };
    state.store.items.unshift(conversation);
    state.store.current = conversation.id;
  }
  return conversation;
}

function newConversation() {
  const current = currentConversation();
  if (current.messages.length) {
    state.store.current = null;
    currentConversation().model = current.model;
  }
  saveConversations();
  openConversation(currentConversation());
}

function openConversation(conversation) {
  if (state.busy) stop();
  state.store.current = conversation.id;
  saveConversations();
  $("conversation-title").textContent = conversation.title;
  $("messages").replaceChildren();
  for (const message of conversation.messages) addMessage(message.role, message.content, message.status);
  notice("");
  if (state.models.length) showModel(conversation.model || state.config.model); else updateContext();
  listConversations();
  showConversations(false);
  $("prompt").focus();
}

function listConversations() {
  const list = $("conversation-list");
  list.replaceChildren();
  const shown = [...state.store.items].sort((a, b) => b.updated - a.updated);
  for (const conversation of shown) {
    const item = document.createElement("li");
    item.dataset.id = conversation.id;
    const open = button(conversation.title, "open", () => openConversation(conversation));
    open.id = "conversation-" + conversation.id;
    if (conversation.id === state.store.current) open.setAttribute("aria-current", "true");
    // Named "Rename" and "Delete", described by the title: a title in their names would make
    // every label search on the page (the Message box's, too) match the user's own words.
    const rename = button("Rename", "secondary small", () => renameConversation(item, conversation));
    const remove = button("Delete", "secondary small", () => deleteConversation(conversation));
    for (const action of [rename, remove]) action.setAttribute("aria-describedby", open.id);
    item.append(open, rename, remove);
    list.append(item);
  }
}

function button(text, className, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = text;
  node.addEventListener("click", onClick);
  return node;
}

function renameConversation(item, conversation) {
  const input = document.createElement("input");
  input.value = conversation.title;
  input.className = "rename";
  input.setAttribute("aria-label", "New name");
  let done = false;
  const finish = (keep) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (keep && title) {
      conversation.title = title.slice(0, 80);
      saveConversations();
      if (conversation.id === state.store.current) $("conversation-title").textContent = conversation.title;
      announce(`Renamed to “${conversation.title}”.`);
    }
    listConversations();
    focusConversation(conversation.id);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); finish(true); }
    if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

function deleteConversation(conversation) {
  const shown = [...state.store.items].sort((a, b) => b.updated - a.updated);
  const next = shown[shown.indexOf(conversation) + 1] || shown[shown.indexOf(conversation) - 1];
  state.store.items = state.store.items.filter((c) => c !== conversation);
  if (state.store.current === conversation.id) {
    state.store.current = next ? next.id : null;
    openConversation(currentConversation());
  } else {
    saveConversations();
    listConversations();
  }
  announce(`Deleted “${conversation.title}”.`);
  if (next) focusConversation(next.id); else $("new-conversation").focus();
}

function focusConversation(id) {
  const open = $("conversation-list").querySelector(`li[data-id="${CSS.escape(id)}"] button.open`);
  if (open) open.focus();
}

// On a phone the list is a panel the header's button opens and closes.
function showConversations(open) {
  $("conversations").classList.toggle("open", open);
  $("toggle-conversations").setAttribute("aria-expanded", String(open));
  if (open) $("new-conversation").focus();
}

function announce(text) { $("announce").textContent = text; }

// ---- context ----------------------------------------------------------------------------

const estimate = (message) => Math.ceil(message.content.length / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE;

// The messages to send: the oldest turns (a message of the user's and the answers after it)
// dropped first until the rest fit the model's context less room for the answer; the newest
// message is always sent.
function bounded(messages, limit) {
  if (!limit) return { sent: messages, dropped: 0, budget: null };
  const budget = limit - Math.min(ANSWER_TOKENS, Math.floor(limit / 4));
  let total = messages.reduce((sum, m) => sum + estimate(m), 0), start = 0;
  while (total > budget && start < messages.length - 1) {
    do { total -= estimate(messages[start]); start += 1; }
    while (start < messages.length - 1 && messages[start].role !== "user");
  }
  return { sent: messages.slice(start), dropped: start, budget };
}

function contextLimit() {
  const entry = entryFor($("model").value);
  return entry ? entry.max_model_len : undefined;
}

// Marks the messages that are no longer sent, and says so.
function updateContext() {
  const { dropped, budget } = bounded(currentConversation().messages, contextLimit());
  $("messages").querySelectorAll("li").forEach((item, index) => item.classList.toggle("outside-context", index < dropped));
  $("context-note").textContent = dropped
    ? `The ${dropped} oldest messages are no longer sent to the model: it reads at most `
      + `${number(contextLimit())} tokens, and ${number(contextLimit() - budget)} are kept for its answer. `
      + `Tokens are estimated at ${CHARS_PER_TOKEN} characters each.`
    : "";
}

// ---- sending ----------------------------------------------------------------------------

function addMessage(role, text, status) {
  const item = document.createElement("li");
  item.className = role;
  if (role === "assistant") render(item, text); else item.textContent = text;
  item.setAttribute("aria-label", role === "user" ? "You" : "Assistant");
  if (status) markEnded(item, status);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// An answer that did not finish: cut off by the model, or stopped by the user.
function markEnded(item, status) {
  item.classList.add(status === "stopped" ? "stopped" : "incomplete");
  item.setAttribute("aria-label", status === "stopped" ? "Assistant (stopped)" : "Assistant (cut off)");
}

function notice(text) { $("notice").textContent = text; }

function busy(on) {
  state.busy = on;
  $("send").disabled = on;
  $("stop").hidden = !on;
}

function stop() {
  if (state.controller) state.controller.abort();
}

async function send() {
  const prompt = $("prompt").value.trim();
  if (!prompt || state.busy) return;
  const model = chosenModel();
  if (!model) return;
  const conversation = currentConversation();
  busy(true);
  notice("");
  const sent = addMessage("user", prompt);
  $("prompt").value = "";
  conversation.messages.push({ role: "user", content: prompt });
  const { sent: context } = bounded(conversation.messages, contextLimit());
  updateContext();
  const controller = new AbortController();
  state.controller = controller;
  try {
    const response = await gateway("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model, stream: true, messages: context.map(({ role, content }) => ({ role, content })),
      }),
      signal: controller.signal,
    });
    if (!response.ok) { unsend(conversation, sent, prompt); await explain(response); return; }
    const reply = addMessage("assistant", "");
    reply.setAttribute("aria-busy", "true");
    let text, status;
    try {
      text = await readStream(response, controller.signal, (whole) => render(reply, whole));
    } catch (error) {
      if (!(error instanceof Ended)) throw error;
      ({ partial: text, status } = error);
      render(reply, text); // the words that came with the end
      markEnded(reply, status);
      notice(status === "stopped" ? "" : "The reply was cut off: the model stopped answering. Ask again to continue.");
    }
    reply.removeAttribute("aria-busy");
    // What the user saw, cut off or not, is what the model sees next time.
    conversation.messages.push({ role: "assistant", content: text, ...(status ? { status } : {}) });
    if (conversation.messages.length === 2 && conversation.title === "New conversation") {
      conversation.title = prompt.length > 40 ? prompt.slice(0, 40) + "…" : prompt;
      $("conversation-title").textContent = conversation.title;
    }
  } catch (error) {
    unsend(conversation, sent, prompt);
    if (!controller.signal.aborted) notice("The chat service could not be reached. Check your connection and try again.");
  } finally {
    state.controller = null;
    busy(false);
    conversation.updated = Date.now();
    saveConversations();
    listConversations();
    refreshQuota();
    $("prompt").focus();
  }
}

// A message that did not go through leaves the conversation and returns to the input box.
function unsend(conversation, item, prompt) {
  item.remove();
  conversation.messages.pop();
  $("prompt").value = prompt;
  updateContext();
}

// A reply that stopped in the middle: "stopped" when the user stopped it; "cut-off" when the
// stream ended with an error event, without [DONE], or the connection broke. It carries the
// words that did arrive.
class Ended extends Error {
  constructor(partial, status) { super("the reply ended early"); this.partial = partial; this.status = status; }
}

async function readStream(response, signal, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", finished = false;
  const ended = () => new Ended(text, signal.aborted ? "stopped" : "cut-off");
  for (;;) {
    let chunk;
    try { chunk = await reader.read(); } catch (_) { throw ended(); }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") { finished = true; continue; }
      let event;
      try { event = JSON.parse(data); } catch (_) { continue; } // an event the break cut in half
      if (event.error) throw ended();
      for (const choice of event.choices || []) text += (choice.delta && choice.delta.content) || "";
    }
    onText(text);
  }
  if (!finished) throw ended();
  return text;
}

async function explain(response) {
  let code = "";
  try { code = (await response.json()).error.code; } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    showSignIn("Your session has ended. Please sign in again.");
  } else if (response.status === 429 && code === "quota_exceeded") {
    notice("You have used today's allowance of tokens. It renews at midnight UTC.");
  } else if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    notice(`You are sending messages too quickly. Please wait ${wait} seconds and try again.`);
  } else if (response.status === 404 && code === "model_not_found") {
    notice("No model of that name is served here. Pick another model.");
  } else if (response.status === 413 || response.status === 400) {
    notice("That message could not be sent: it is too long or not valid.");
  } else {
    notice(`The assistant is unavailable right now (error ${response.status}). Please try again shortly.`);
  }
}

start();
