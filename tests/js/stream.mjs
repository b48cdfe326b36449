// The official openai npm package against a running streamchat: one streamed completion
// with usage, then one request streamchat refuses. Prints what it saw as JSON on stdout;
// tests/test_openai_js.py runs it and checks. Usage: node stream.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "x", maxRetries: 0, timeout: 20000 });

const seen = { roles: [], text: "", finishReasons: [], usage: null, ids: [], objects: [] };
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hello from node" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  seen.ids.push(chunk.id);
  seen.objects.push(chunk.object);
  if (chunk.usage) seen.usage = chunk.usage;
  for (const choice of chunk.choices) {
    if (choice.delta.role) seen.roles.push(choice.delta.role);
    seen.text += choice.delta.content ?? "";
    if (choice.finish_reason) seen.finishReasons.push(choice.finish_reason);
  }
}

let refused = null;
try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], n: 2 });
} catch (error) {
  if (!(error instanceof OpenAI.BadRequestError)) throw error;
  refused = { status: error.status, message: error.message, param: error.param };
}

console.log(JSON.stringify({ seen, refused }));
