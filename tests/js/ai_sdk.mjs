// The AI SDK (`ai` with `@ai-sdk/openai-compatible`) against a running streamchat: a tool
// loop with streamText, or generateObject. Prints what it saw as JSON on stdout;
// tests/test_clients_ai_sdk.py runs it and checks. Usage: node ai_sdk.mjs BASE_URL MODEL tools|object
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, model, mode] = process.argv.slice(2);
const provider = createOpenAICompatible({
  name: "streamchat",
  baseURL,
  apiKey: "x",
  supportsStructuredOutputs: true,
  includeUsage: true,
});

async function tools() {
  const calls = [];
  const result = streamText({
    model: provider(model),
    prompt: "What's the weather in Paris?",
    maxRetries: 0,
    stopWhen: stepCountIs(3),
    tools: {
      get_weather: tool({
        description: "The weather in a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          calls.push(city);
          return `sunny in ${city}`;
        },
      }),
    },
  });
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part.type);
  }
  const steps = await result.steps;
  return {
    calls,
    parts,
    text: await result.text,
    finishReasons: steps.map((step) => step.finishReason),
    toolCalls: steps.flatMap((step) => step.toolCalls.map((c) => [c.toolCallId, c.toolName, c.input])),
  };
}

async function object() {
  const { object: city, finishReason } = await generateObject({
    model: provider(model),
    maxRetries: 0,
    schema: z.object({ name: z.string(), country: z.string() }),
    prompt: "The capital of France?",
  });
  return { city, finishReason };
}

const run = { tools, object }[mode];
console.log(JSON.stringify(await run()));
