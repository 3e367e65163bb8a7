// The chat page: sign in, send messages to the gateway, render streamed replies as they
// arrive, and say in plain words what went wrong. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, history: [], busy: false };
const TOKEN_KEY = "chat.token";

async function start() {
  state.config = await (await fetch("/config.json")).json();
  $("password-row").hidden = state.config.auth.mode === "dev";
  $("sign-in-form").addEventListener("submit", signIn);
  $("compose").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
  });
  $("sign-out").addEventListener("click", () => showSignIn(""));
  if (sessionStorage.getItem(TOKEN_KEY)) showChat(); else showSignIn("");
}

function showSignIn(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("sign-in-reason").textContent = reason;
  $("chat").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("username").focus();
}

function showChat() {
  $("sign-in").hidden = true;
  $("chat").hidden = false;
  $("sign-out").hidden = false;
  $("prompt").focus();
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

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text;
  item.setAttribute("aria-label", role === "user" ? "You" : "Assistant");
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function notice(text) { $("notice").textContent = text; }

async function send() {
  const prompt = $("prompt").value.trim();
  if (!prompt || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  notice("");
  const sent = addMessage("user", prompt);
  $("prompt").value = "";
  state.history.push({ role: "user", content: prompt });
  try {
    const response = await fetch(state.config.gatewayUrl + "/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
      body: JSON.stringify({ model: state.config.model, messages: state.history, stream: true }),
    });
    if (!response.ok) { unsend(sent, prompt); await explain(response); return; }
    const reply = addMessage("assistant", "");
    reply.setAttribute("aria-busy", "true");
    let text;
    try {
      text = await readStream(response, (delta) => { reply.textContent += delta; });
    } catch (error) {
      if (!(error instanceof CutOff)) throw error;
      text = error.partial;
      reply.classList.add("incomplete");
      reply.setAttribute("aria-label", "Assistant (cut off)");
      notice("The reply was cut off: the model stopped answering. Ask again to continue.");
    }
    reply.removeAttribute("aria-busy");
    // What the user saw, cut off or not, is what the model sees next time.
    state.history.push({ role: "assistant", content: text });
  } catch (error) {
    unsend(sent, prompt);
    notice("The chat service could not be reached. Check your connection and try again.");
  } finally {
    state.busy = false;
    $("send").disabled = false;
    $("prompt").focus();
  }
}

// A message that did not go through leaves the conversation and returns to the input box.
function unsend(item, prompt) {
  item.remove();
  state.history.pop();
  $("prompt").value = prompt;
}

// A reply that stopped in the middle: the stream ended with an error event, without
// [DONE], or the connection broke. It carries the words that did arrive.
class CutOff extends Error {
  constructor(partial) { super("the reply was cut off"); this.partial = partial; }
}

async function readStream(response, onDelta) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", finished = false;
  for (;;) {
    let chunk;
    try { chunk = await reader.read(); } catch (_) { throw new CutOff(text); }
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
      if (event.error) throw new CutOff(text);
      for (const choice of event.choices || []) {
        const delta = (choice.delta && choice.delta.content) || "";
        text += delta;
        onDelta(delta);
      }
    }
  }
  if (!finished) throw new CutOff(text);
  return text;
}

async function explain(response) {
  let code = "";
  try { code = (await response.json()).error.code; } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    showSignIn("Your session has ended. Please sign in again.");
  } else if (response.status === 429 && code === "quota_exceeded") {
    notice("You have used today's allowance of messages. It renews at midnight UTC.");
  } else if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    notice(`You are sending messages too quickly. Please wait ${wait} seconds and try again.`);
  } else if (response.status === 413 || response.status === 400) {
    notice("That message could not be sent: it is too long or not valid.");
  } else {
    notice(`The assistant is unavailable right now (error ${response.status}). Please try again shortly.`);
  }
}

start();
