// The real-cluster suite's app, in Node: from a Pod, it calls the llmquota
// gateway with the official OpenAI Node SDK (openai from npm), its
// ServiceAccount's projected token as the API key, and prints one JSON line
// per call (and a summary line last), as hack/cluster/gatewayclient does.
// Even calls are plain, odd ones streamed (stream_options.include_usage).
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const flags = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split(/=(.*)/s).slice(0, 2)));
const baseURL = flags["base-url"] ?? "http://llmquota-gateway.llmquota-system.svc/v1";
const tokenFile = flags["token-file"] ?? "/var/run/secrets/llmquota/token";
const model = flags.model ?? "";
const calls = Number(flags.calls ?? 1);
const everyMs = Number(flags["every-ms"] ?? 1000);

async function call(n) {
  const c = { n, time: new Date().toISOString(), status: 0 };
  let token;
  try {
    token = readFileSync(tokenFile, "utf8").trim(); // read each time: the kubelet rotates it
  } catch (e) {
    c.error = String(e);
    return c;
  }
  const client = new OpenAI({ baseURL, apiKey: token, maxRetries: 0, timeout: 30000 });
  const messages = [{ role: "user", content: `Classify headline ${n}` }];
  try {
    if (n % 2 === 0) {
      const { data, response } = await client.chat.completions.create({ model, messages, max_completion_tokens: 64 }).withResponse();
      c.status = response.status;
      c.provider = response.headers.get("x-llmquota-provider") ?? "";
      c.text = data.choices[0]?.message?.content ?? "";
    } else {
      const { data: stream, response } = await client.chat.completions
        .create({ model, messages, max_completion_tokens: 64, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      c.status = response.status;
      c.provider = response.headers.get("x-llmquota-provider") ?? "";
      let text = "";
      let usage = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? "";
        usage = chunk.usage ?? usage;
      }
      c.text = text;
      c.streamed = true;
      c.tokens = usage ? usage.total_tokens : 0;
    }
  } catch (e) {
    c.status = e instanceof OpenAI.APIError && e.status ? e.status : 0;
    c.error = String(e.message ?? e);
  }
  return c;
}

const summary = { calls: 0, byStatus: {} };
for (let n = 0; n < calls; n++) {
  const started = Date.now();
  const c = await call(n);
  summary.calls++;
  summary.byStatus[c.status] = (summary.byStatus[c.status] ?? 0) + 1;
  console.log(JSON.stringify(c));
  await new Promise((r) => setTimeout(r, Math.max(0, started + everyMs - Date.now())));
}
console.log(JSON.stringify(summary));
