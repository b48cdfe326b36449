// Talking to the server: the envelope JSON endpoints and the event streams.
//
// Streams are read as the seed's article reads them (fetch, res.body.getReader(), TextDecoder,
// blocks split on a blank line), made complete: CRLF line ends, comment lines (`: ping`),
// `id:` lines and multi-line data are handled, and an HTTP error becomes an ApiError carrying
// the server's own message.

/** An error answer from the server: its HTTP status, envelope code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** A stream that stopped before its last event (`is_end`): the connection was lost. */
export class StreamBroken extends Error {
  constructor() {
    super("The connection was lost before the answer ended.");
    this.name = "StreamBroken";
  }
}

async function errorOf(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === "string" && body.message) {
      return new ApiError(response.status, body.code ?? null, body.message);
    }
  } catch {
    // Not our envelope: a proxy's error page, say.
  }
  const reason = response.statusText ? ` ${response.statusText}` : "";
  return new ApiError(response.status, null, `The server answered HTTP ${response.status}${reason}.`);
}

async function call(method, url, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await errorOf(response);
  const envelope = await response.json();
  if (envelope.code !== 0) throw new ApiError(response.status, envelope.code, envelope.message);
  return envelope.data;
}

/** GET an envelope endpoint; its `data`. */
export function getData(url) {
  return call("GET", url);
}

/** POST to an envelope endpoint; its `data`. */
export function postData(url, body) {
  return call("POST", url, body);
}

/** Start a chat: POST /api/chat. Resolves once the server accepted it (or throws ApiError). */
export async function startChat(body) {
  const response = await fetch("/api/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** Resume a stream after event `after`: GET /api/chat/streams/{id}?after=N. */
export async function resumeStream(streamId, after) {
  const url = `/api/chat/streams/${encodeURIComponent(streamId)}?after=${after}`;
  const response = await fetch(url, { headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw await errorOf(response);
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
  if (error instanceof ApiError || error instanceof StreamBroken) return error.message;
  if (error instanceof TypeError) return "Cannot reach the server. Check your connection.";
  return String(error?.message ?? error);
}
