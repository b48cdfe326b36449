// The AI SDK's own client code (npm `ai`) against a running streamchat's UI API: the
// transport `useChat` uses (DefaultChatTransport: sendMessages, reconnectToStream) and
// readUIMessageStream, which builds the UIMessage a page shows. Every chunk the server sends
// is also checked against the SDK's own schema (uiMessageChunkSchema). Prints what it saw
// as JSON on stdout; tests/test_ui_js.py runs it and checks.
//
// Usage: node ui.mjs SCENARIO BASE_URL AUTH CHAT_ID [TEXT]
//   AUTH: "uid=N" (a query parameter, auth off) or "key=sc-…" (a bearer key)
//   send           send TEXT, read the whole answer
//   regenerate     answer the chat's last question again
//   leave-resume   send TEXT, close the POST after 3 chunks, reconnect: the whole answer;
//                  reconnect again once it has ended: null (204)
//   send-stop      send TEXT, stop the chat after 3 chunks (POST …/stop), read to the end
//   resume         reconnect only
import { DefaultChatTransport, readUIMessageStream, uiMessageChunkSchema } from "ai";
import { safeValidateTypes } from "@ai-sdk/provider-utils";

const [scenario, base, auth, chatId, text = "hello from node"] = process.argv.slice(2);
const [authKind, authValue] = auth.split(/=(.*)/s);
const query = authKind === "uid" ? `?uid=${authValue}` : "";
const headers = authKind === "key" ? { Authorization: `Bearer ${authValue}` } : {};
const api = `${base}/api/ui/chat${query}`;

const seen = { responses: [], invalid: [] };
const readers = [];

// fetch that keeps a copy of every UI stream and checks each of its chunks.
async function checkingFetch(url, init) {
  const response = await fetch(url, init);
  const record = {
    url: String(url),
    method: init?.method ?? "GET",
    status: response.status,
    header: response.headers.get("x-vercel-ai-ui-message-stream"),
    contentType: response.headers.get("content-type"),
  };
  seen.responses.push(record);
  if (response.status !== 200 || !response.body) return response;
  const [mine, theirs] = response.body.tee();
  readers.push(check(mine, record));
  return new Response(theirs, { status: response.status, headers: response.headers });
}

async function check(stream, record) {
  const decoder = new TextDecoder();
  let buffer = "";
  record.payloads = [];
  try {
    for await (const bytes of stream) {
      buffer += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          record.payloads.push(data);
          if (data === "[DONE]") continue;
          const result = await safeValidateTypes({ value: JSON.parse(data), schema: uiMessageChunkSchema });
          if (!result.success) seen.invalid.push({ data, error: String(result.error) });
        }
      }
    }
  } catch (error) {
    record.closedEarly = String(error?.name ?? error);
  }
}

const transport = new DefaultChatTransport({ api, headers, fetch: checkingFetch });

function userMessage(id, words) {
  return { id, role: "user", parts: [{ type: "text", text: words }] };
}

async function read(stream, { stopAfter, onChunks } = {}) {
  let last = null;
  let chunks = 0;
  let errors = [];
  const counted = stream.pipeThrough(
    new TransformStream({
      async transform(chunk, controller) {
        controller.enqueue(chunk);
        chunks += 1;
        if (onChunks && chunks === stopAfter) await onChunks();
      },
    }),
  );
  for await (const message of readUIMessageStream({ stream: counted, onError: (e) => errors.push(String(e)) })) {
    last = message;
  }
  return { message: last, errors };
}

function send(trigger, abortSignal) {
  return transport.sendMessages({
    chatId,
    messages: [userMessage("u-1", text)],
    trigger,
    messageId: undefined,
    abortSignal,
  });
}

async function leaveThenResume() {
  const controller = new AbortController();
  const stream = await send("submit-message", controller.signal);
  const reader = stream.getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  controller.abort(); // the page goes away: the POST is closed
  await reader.cancel().catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 200));
  const again = await transport.reconnectToStream({ chatId });
  const resumed = again === null ? null : await read(again);
  const after = await transport.reconnectToStream({ chatId });
  return { resumed, afterEnd: after === null ? null : "a stream" };
}

async function sendThenStop() {
  const stream = await send("submit-message");
  const stopUrl = `${base}/api/ui/chat/${encodeURIComponent(chatId)}/stop${query}`;
  let stop = null;
  const result = await read(stream, {
    stopAfter: 4,
    onChunks: async () => {
      const response = await fetch(stopUrl, { method: "POST", headers });
      stop = { status: response.status, body: await response.json() };
    },
  });
  return { ...result, stop };
}

let outcome;
if (scenario === "send") outcome = await read(await send("submit-message"));
else if (scenario === "regenerate") outcome = await read(await send("regenerate-message"));
else if (scenario === "leave-resume") outcome = await leaveThenResume();
else if (scenario === "send-stop") outcome = await sendThenStop();
else if (scenario === "resume") {
  const stream = await transport.reconnectToStream({ chatId });
  outcome = stream === null ? null : await read(stream);
} else throw new Error(`unknown scenario ${scenario}`);

await Promise.all(readers);
console.log(JSON.stringify({ outcome, seen }));
