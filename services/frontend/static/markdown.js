// Markdown to DOM for model answers, safe by construction: every node is made with
// createElement and every piece of the model's text goes in as a text node, never as HTML,
// so a model's <script>, onerror= or <iframe> shows as the characters it is. Links are made
// only for absolute http:, https: and mailto: URLs; anything else stays text.
//
// A subset that models write: paragraphs, headings, lists, block quotes, rules, emphasis,
// inline code, links, and fenced code blocks with a copy button. Rendering the whole text
// again for each streamed chunk is cheap at answer sizes, and an unclosed fence or emphasis
// mid-stream simply renders as what has arrived so far.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const BLANK = /^\s*$/;
// Code spans first, so nothing inside them is read as emphasis or a link.
const INLINE = new RegExp(
  [
    /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.source, // 1, 2: code span
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source, // 3: strong
    /(?<![\w])__(?=\S)([\s\S]*?\S)__(?![\w])/.source, // 4: strong
    /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source, // 5: emphasis
    /(?<![\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\w])/.source, // 6: emphasis
    /(!?)\[([^\]\n]*)\]\(\s*<?([^()\s<>]*)>?(?:\s+"[^"\n]*")?\s*\)/.source, // 7, 8, 9: link or image
  ].join("|"),
  "g",
);
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
// The model's headings sit below the page's own (h1 the site, h2 the conversation).
const HEADING_OFFSET = 2;

/** Replace ``container``'s children with ``markdown`` rendered. */
export function render(container, markdown) {
  const fragment = document.createDocumentFragment();
  blocks(fragment, markdown.replace(/\r\n?/g, "\n").split("\n"));
  container.replaceChildren(fragment);
}

/** An absolute http(s) or mailto URL, normalized; null for anything else (javascript:, data:,
 * relative paths, URLs hidden behind control characters, which the URL parser strips first). */
export function safeUrl(raw) {
  let url;
  try { url = new URL(raw); } catch (_) { return null; }
  return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
}

/** Copy buttons for every code block under ``root``, now and to come (re-rendering replaces them). */
export function enableCopy(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button || !root.contains(button)) return;
    const code = button.closest(".code-block").querySelector("code").textContent;
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}

function blocks(parent, lines) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (BLANK.test(line)) {
      i += 1;
    } else if ((match = FENCE.exec(line))) {
      const close = new RegExp("^ {0,3}" + match[1][0] + "{" + match[1].length + ",}\\s*$");
      const body = [];
      for (i += 1; i < lines.length && !close.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1; // the closing fence, or past the end while it streams in
      parent.append(codeBlock(body.join("\n"), match[2]));
    } else if ((match = HEADING.exec(line))) {
      const heading = element("h" + Math.min(match[1].length + HEADING_OFFSET, 6));
      inline(heading, match[2]);
      parent.append(heading);
      i += 1;
    } else if (RULE.test(line)) {
      parent.append(element("hr"));
      i += 1;
    } else if (ITEM.test(line)) {
      i = list(parent, lines, i);
    } else if (QUOTE.test(line)) {
      const quoted = [];
      for (; i < lines.length && (match = QUOTE.exec(lines[i])); i += 1) quoted.push(match[1]);
      const quote = element("blockquote");
      blocks(quote, quoted);
      parent.append(quote);
    } else {
      const text = [];
      for (; i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i]); i += 1) text.push(lines[i]);
      const paragraph = element("p");
      inline(paragraph, text.join("\n"));
      parent.append(paragraph);
    }
  }
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || ITEM.test(line) || QUOTE.test(line);
}

// A run of items of one kind; a more indented line (a continuation, or a nested item) joins
// the item above it, as text.
function list(parent, lines, i) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const list = element(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) list.start = parseInt(first[2], 10);
  let item = null, text = [];
  const finish = () => { if (item) { inline(item, text.join("\n")); list.append(item); } };
  for (; i < lines.length; i += 1) {
    const match = ITEM.exec(lines[i]);
    if (match && match[1].length <= first[1].length && /\d/.test(match[2]) === ordered) {
      finish();
      item = element("li");
      text = [match[3]];
    } else if (!BLANK.test(lines[i]) && /^\s/.test(lines[i])) {
      text.push(lines[i].trim());
    } else {
      break;
    }
  }
  finish();
  parent.append(list);
  return i;
}

function codeBlock(code, language) {
  const block = element("div", "code-block");
  const head = element("div", "code-head");
  const name = element("span", "code-language");
  name.textContent = language || "code";
  const copy = element("button", "copy");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy " + (language || "code") + " to the clipboard");
  head.append(name, copy);
  const pre = element("pre");
  pre.tabIndex = 0; // a long line scrolls sideways: reachable by keyboard
  const body = element("code");
  if (language) body.dataset.language = language;
  body.textContent = code;
  pre.append(body);
  block.append(head, pre);
  return block;
}

function inline(parent, text) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[2] !== undefined) {
      const code = element("code");
      code.textContent = match[2].replace(/^ (.*) $/s, "$1");
      parent.append(code);
    } else if (match[3] !== undefined || match[4] !== undefined) {
      const strong = element("strong");
      inline(strong, match[3] ?? match[4]);
      parent.append(strong);
    } else if (match[5] !== undefined || match[6] !== undefined) {
      const em = element("em");
      inline(em, match[5] ?? match[6]);
      parent.append(em);
    } else {
      parent.append(link(match[7] === "!", match[8], match[9]));
    }
  }
  if (last < text.length) parent.append(text.slice(last));
}

// An image is shown as a link to it: the page loads nothing a model names.
function link(image, label, target) {
  const href = safeUrl(target);
  const text = image ? "image: " + (label || target) : label || target;
  if (!href) return document.createTextNode(text);
  const anchor = element("a");
  anchor.href = href;
  anchor.rel = "noopener noreferrer nofollow";
  anchor.target = "_blank";
  if (image) anchor.append(text); else inline(anchor, label || target);
  return anchor;
}

function element(name, className) {
  const node = document.createElement(name);
  if (className) node.className = className;
  return node;
}
