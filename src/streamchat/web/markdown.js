// A small Markdown renderer for untrusted text (model output).
//
// Safety by construction: the output is built with createElement and text nodes only. Nothing
// from the input is ever parsed as HTML (no innerHTML, no insertAdjacentHTML), so `<script>` or
// `<img onerror=…>` in an answer stays text. Links are kept only for http(s) and mailto URLs,
// and images are shown as links (a remote image would call out to a third party).
//
// Covered: paragraphs, headings, fenced and indented code blocks, lists (nested, ordered,
// task-style text kept as is), block quotes, tables, rules; inline code, bold, italic,
// strikethrough, links and bare URLs. Unfinished constructs (an open code fence while the
// answer streams) render as far as they go.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const LINK_SCHEMES = new Set(["http:", "https:", "mailto:"]);

/** Render `text` as Markdown into a new DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  renderBlocks(markdownLines(text), fragment);
  return fragment;
}

/** The lines of `text`, as the renderer reads them. */
export function markdownLines(text) {
  return text.replace(/\r\n?/g, "\n").split("\n");
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) i = renderBlock(lines, i, parent);
}

/**
 * Render the block that starts at `lines[i]` into `parent` (nothing for a blank line); the
 * index of the line after it, `end`. What it renders depends on `lines[i]` and the lines
 * after it only, and it reads no line beyond `lines[end + 1]` (growing.js relies on both).
 */
export function renderBlock(lines, i, parent) {
  const line = lines[i];
  if (!line.trim()) return i + 1;
  if (FENCE.test(line)) return fencedCode(lines, i, parent);
  if (HEADING.test(line)) {
    const [, hashes, title] = line.match(HEADING);
    parent.append(element(`h${hashes.length}`, inline(title)));
    return i + 1;
  }
  if (RULE.test(line)) {
    parent.append(document.createElement("hr"));
    return i + 1;
  }
  if (QUOTE.test(line)) return quote(lines, i, parent);
  if (ITEM.test(line)) return list(lines, i, parent);
  if (/^( {4}|\t)/.test(line)) return indentedCode(lines, i, parent);
  if (line.includes("|") && isTableSeparator(lines[i + 1] ?? "")) return table(lines, i, parent);
  return paragraph(lines, i, parent);
}

function isTableSeparator(line) {
  return line.includes("|") && TABLE_SEPARATOR.test(line);
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
    || ITEM.test(line);
}

function fencedCode(lines, start, parent) {
  const [, fence, language] = lines[start].match(FENCE);
  const body = [];
  let i = start + 1;
  while (i < lines.length && !lines[i].trim().startsWith(fence)) {
    body.push(lines[i]);
    i += 1;
  }
  parent.append(codeBlock(body.join("\n"), language));
  return i + 1; // past the closing fence (or the end, while the answer is still streaming)
}

function indentedCode(lines, start, parent) {
  const body = [];
  let i = start;
  while (i < lines.length && (/^( {4}|\t)/.test(lines[i]) || !lines[i].trim())) {
    body.push(lines[i].replace(/^( {4}|\t)/, ""));
    i += 1;
  }
  while (body.length && !body[body.length - 1].trim()) body.pop();
  parent.append(codeBlock(body.join("\n"), ""));
  return i;
}

function codeBlock(source, language) {
  const code = document.createElement("code");
  code.textContent = source;
  const lang = language.replace(/[^\w+-]/g, "");
  if (lang) {
    code.className = `language-${lang}`;
    code.dataset.lang = lang;
  }
  return element("pre", [code]);
}

function quote(lines, start, parent) {
  const inner = [];
  let i = start;
  while (i < lines.length && lines[i].trim()) {
    const match = lines[i].match(QUOTE);
    inner.push(match ? match[1] : lines[i]);
    i += 1;
  }
  const blockquote = document.createElement("blockquote");
  renderBlocks(inner, blockquote);
  parent.append(blockquote);
  return i;
}

function list(lines, start, parent) {
  const [, indent, marker] = lines[start].match(ITEM);
  const ordered = /\d/.test(marker);
  const listElement = document.createElement(ordered ? "ol" : "ul");
  if (ordered && parseInt(marker, 10) !== 1) listElement.start = parseInt(marker, 10);
  let i = start;
  while (i < lines.length) {
    const match = lines[i].match(ITEM);
    if (!match || match[1].length !== indent.length || /\d/.test(match[2]) !== ordered) break;
    const item = document.createElement("li");
    const body = [match[3]];
    i += 1;
    // The item goes on over continuation lines and deeper-indented blocks (nested lists).
    while (i < lines.length) {
      const next = lines[i];
      const nested = next.match(ITEM);
      if (nested && nested[1].length <= indent.length) break;
      if (!next.trim()) {
        const following = lines[i + 1] ?? "";
        if (!following.startsWith(`${indent} `)) break;
      } else if (!nested && !next.startsWith(`${indent} `) && startsBlock(next)) {
        break;
      }
      body.push(next.slice(Math.min(indent.length + 2, leadingSpaces(next))));
      i += 1;
    }
    renderItem(body, item);
    listElement.append(item);
    while (i < lines.length && !lines[i].trim()) {
      // A blank line between items of the same list does not end it.
      const following = lines[i + 1] ?? "";
      const match = following.match(ITEM);
      if (!match || match[1].length !== indent.length) break;
      i += 1;
    }
  }
  parent.append(listElement);
  return i;
}

function renderItem(body, item) {
  // The item's first paragraph is inline text (no <p>); what follows it renders as blocks.
  const split = body.findIndex((line, n) => n > 0 && (!line.trim() || startsBlock(line)));
  item.append(...inline((split < 0 ? body : body.slice(0, split)).join("\n")));
  if (split >= 0) renderBlocks(body.slice(split), item);
}

function leadingSpaces(line) {
  return line.length - line.trimStart().length;
}

function table(lines, start, parent) {
  const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|")
    .map((cell) => cell.trim());
  const aligns = cells(lines[start + 1]).map((cell) => {
    if (cell.startsWith(":") && cell.endsWith(":")) return "center";
    return cell.endsWith(":") ? "right" : "";
  });
  const row = (values, tag) => element("tr", values.map((value, n) => {
    const cell = element(tag, inline(value));
    if (aligns[n]) cell.style.textAlign = aligns[n];
    return cell;
  }));
  const head = element("thead", [row(cells(lines[start]), "th")]);
  const body = document.createElement("tbody");
  let i = start + 2;
  while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
    body.append(row(cells(lines[i]), "td"));
    i += 1;
  }
  parent.append(element("div", [element("table", [head, body])], "table-wrap"));
  return i;
}

function paragraph(lines, start, parent) {
  const body = [];
  let i = start;
  while (i < lines.length && lines[i].trim() && (i === start || !startsBlock(lines[i]))) {
    body.push(lines[i].trim());
    i += 1;
  }
  parent.append(element("p", inline(body.join("\n"))));
  return i;
}

// Inline spans, earliest match first. Each alternative is one capture group of INLINE.
const INLINE_RULES = [
  ["code", /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/],
  ["image", /!\[([^\]\n]*)\]\(\s*<?([^\s()<>]+)>?(?:\s+"[^"\n]*")?\s*\)/],
  ["link", /\[([^\]\n]+)\]\(\s*<?([^\s()<>]+)>?(?:\s+"[^"\n]*")?\s*\)/],
  ["strong", /\*\*(?=\S)([\s\S]*?\S)\*\*|(?<!\w)__(?=\S)([\s\S]*?\S)__(?!\w)/],
  ["em", /\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<!\w)_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/],
  ["del", /~~(?=\S)([\s\S]*?\S)~~/],
  ["url", /\bhttps?:\/\/[^\s<>]*[^\s<>.,:;!?'")\]]/],
  ["break", /\n/],
];

/** Inline Markdown of `text` as a list of nodes. */
function inline(text) {
  const nodes = [];
  let rest = text;
  while (rest) {
    const found = earliest(rest);
    if (!found) {
      nodes.push(document.createTextNode(rest));
      break;
    }
    const { kind, match } = found;
    if (match.index > 0) nodes.push(document.createTextNode(rest.slice(0, match.index)));
    nodes.push(span(kind, match));
    rest = rest.slice(match.index + match[0].length);
  }
  return nodes;
}

function earliest(text) {
  let best = null;
  for (const [kind, pattern] of INLINE_RULES) {
    const match = pattern.exec(text);
    if (match && (!best || match.index < best.match.index)) best = { kind, match };
  }
  return best;
}

function span(kind, match) {
  switch (kind) {
    case "code": {
      const code = document.createElement("code");
      code.textContent = match[2].replace(/^ (.*) $/, "$1");
      return code;
    }
    case "image":
      return link(match[1] || match[2], match[2], [document.createTextNode(match[1] || match[2])]);
    case "link":
      return link(match[0], match[2], inline(match[1]));
    case "url":
      return link(match[0], match[0], [document.createTextNode(match[0])]);
    case "break":
      return document.createElement("br");
    default: // strong, em, del
      return element(kind, inline(match[1] ?? match[2]));
  }
}

function link(original, target, content) {
  const url = safeUrl(target);
  if (!url) return document.createTextNode(original);
  const a = element("a", content);
  a.href = url;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}

/** `target` as an absolute URL if it is an http(s) or mailto link; null otherwise. */
export function safeUrl(target) {
  try {
    const url = new URL(target, document.baseURI);
    return LINK_SCHEMES.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function element(tag, children, className) {
  const node = document.createElement(tag);
  node.append(...children);
  if (className) node.className = className;
  return node;
}
