// Talking to the server: the envelope JSON endpoints and the event streams.
//
// Streams are read as the seed's article reads them (fetch, res.body.getReader(), TextDecoder,
// blocks split on a blank line), made complete: CRLF line ends, comment lines (`: ping`),
// `id:` lines and multi-line data are handled, and an HTTP error becomes an ApiError carrying
// the server's own message.
//
// With keys on (DESIGN.md §7) every request carries `Authorization: Bearer <key>`: the key the
// page was given with useKey(). A 401 from any request is reported to onUnauthorized's
// listener, so the page can ask for a key wherever the refusal came from.

import { say } from "./words.js";

/** An error answer from the server: its HTTP status, envelope code, message, and the seconds
 *  it asked to wait (`Retry-After`), or null. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

let apiKey = null;
let unauthorized = () => {};

/** Send `key` (or no key, for null) with every request from now on. */
export function useKey(key) {
  apiKey = key || null;
}

/** Call `listener(error, keyUsed)` whenever the server answers 401 to a request sent with
 *  `keyUsed` (null: none): no key, or a wrong or revoked one. */
export function onUnauthorized(listener) {
  unauthorized = listener;
}

function headers(more) {
  return apiKey ? { ...more, Authorization: `Bearer ${apiKey}` } : more;
}

/** A stream that stopped before its last event (`is_end`): the connection was lost. */
export class StreamBroken extends Error {
  constructor() {
    super("The connection was lost before the answer ended.");
    this.name = "StreamBroken";
  }
}

/** The seconds of a `Retry-After` header (a number of seconds or an HTTP date), or null. */
function secondsOf(header) {
  if (!header) return null;
  const trimmed = header.trim();
  const seconds = /^\d+$/.test(trimmed)
    ? Number(trimmed)
    : (Date.parse(trimmed) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(0, Math.ceil(seconds)) : null;
}

/** The ApiError of a response that is not ok to a request sent with `keyUsed`; a 401 is also
 *  reported to the listener. */
export async function errorOf(response, keyUsed = apiKey) {
  const error = await readError(response);
  if (error.status === 401) unauthorized(error, keyUsed);
  return error;
}

async function readError(response) {
  const { status } = response;
  const wait = secondsOf(response.headers.get("Retry-After"));
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === "string" && body.message) {
      return new ApiError(status, body.code ?? null, body.message, wait);
    }
  } catch {
    // Not our envelope: a proxy's error page, say.
  }
  const reason = response.statusText ? ` ${response.statusText}` : "";
  return new ApiError(status, null, `The server answered HTTP ${status}${reason}.`, wait);
}

async function call(method, url, body) {
  const key = apiKey;
  const init = { method, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await errorOf(response, key);
  const envelope = await response.json();
  if (envelope.code !== 0) throw new ApiError(response.status, envelope.code, envelope.message);
  return envelope.data;
}

/** `path` with the query parameters of `params` that are set (not undefined or null). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** GET an envelope endpoint; its `data`. */
export function getData(url) {
  return call("GET", url);
}

/** POST to an envelope endpoint; its `data`. */
export function postData(url, body) {
  return call("POST", url, body);
}

/** DELETE on an envelope endpoint; its `data`. */
export function deleteData(url) {
  return call("DELETE", url);
}

/** The ids of the models this page's key may use (GET /v1/models), the default first. */
export async function listModels() {
  const key = apiKey;
  const response = await fetch("/v1/models", { headers: headers({ Accept: "application/json" }) });
  if (!response.ok) throw await errorOf(response, key);
  const list = await response.json();
  return list.data.map((model) => model.id);
}

/** Start a chat: POST /api/chat. Resolves once the server accepted it (or throws ApiError). */
export async function startChat(body) {
  const key = apiKey;
  const response = await fetch("/api/chat", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response, key);
  return response;
}

/** Resume a stream after event `after`: GET /api/chat/streams/{id}?after=N. */
export async function resumeStream(streamId, after) {
  const url = `/api/chat/streams/${encodeURIComponent(streamId)}?after=${after}`;
  const key = apiKey;
  const response = await fetch(url, { headers: headers({ Accept: "text/event-stream" }) });
  if (!response.ok) throw await errorOf(response, key);
  return response;
}

/** The events of a stream response as parsed JSON objects, as they arrive. */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let ended = false;
  let done = false;
  try {
    while (!done) {
      let value;
      try {
        ({ done, value } = await reader.read());
      } catch {
        throw new StreamBroken(); // the network failed under the stream
      }
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
      buffer = blocks.pop();
      for (const block of blocks) {
        const data = dataOf(block);
        if (data === null) continue; // a `: ping`
        const event = JSON.parse(data);
        ended = event.is_end === true;
        yield event;
      }
    }
  } finally {
    if (!done) reader.cancel().catch(() => {}); // a consumer that stops early closes it
  }
  if (!ended) throw new StreamBroken();
}

function dataOf(block) {
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return data.length ? data.join("\n") : null;
}

/** A person-readable sentence for an error met while talking to the server. */
export function describe(error) {
  if (error instanceof ApiError && error.status === 429) {
    const wait = error.retryAfter;
    if (wait === null) return say("Too many requests: retry in a moment.", "请求过多,请稍后重试。");
    return say(`Too many requests: retry in ${wait} s.`, `请求过多,请 ${wait} 秒后重试。`);
  }
  if (error instanceof ApiError && error.status === 403) {
    return say(`Not allowed: ${error.message}`, `不允许: ${error.message}`);
  }
  if (error instanceof ApiError || error instanceof StreamBroken) return error.message;
  if (error instanceof TypeError) return "Cannot reach the server. Check your connection.";
  return String(error?.message ?? error);
}
