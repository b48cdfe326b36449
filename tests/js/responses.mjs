// The AI SDK's `openai(model)` (its Responses API model) against a running streamchat:
// `streamText` with text, then with one tool over two steps. Prints what it saw as JSON.
// Usage: node responses.mjs <baseURL> <model> <apiKey>
import { createOpenAI } from "@ai-sdk/openai";
import { jsonSchema, stepCountIs, streamText, tool } from "ai";

const [baseURL, model, apiKey] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });

const text = streamText({ model: openai(model), prompt: "hello from node" });
let streamed = "";
for await (const piece of text.textStream) streamed += piece;

const calls = [];
const withTool = streamText({
  model: openai(model),
  prompt: "weather in Paris?",
  tools: {
    get_weather: tool({
      description: "The weather in a city",
      inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } } }),
      execute: async (input) => {
        calls.push(input);
        return { temp: 20 };
      },
    }),
  },
  stopWhen: stepCountIs(2),
});
let after = "";
for await (const piece of withTool.textStream) after += piece;

console.log(
  JSON.stringify({
    text: streamed,
    finishReason: await text.finishReason,
    responseId: (await text.providerMetadata)?.openai?.responseId ?? null,
    calls,
    after,
    steps: (await withTool.steps).length,
  }),
);
