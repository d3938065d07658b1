// amrpc/react under real React (react-dom on a jsdom document): useWorker connects on mount and
// closes on unmount and on a URL change (the server's session count shows it), useIs / useTick /
// useClock re-render on another client's change, useTransitions collects the stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { client, URL_OPEN, until, within } from "./helpers.mjs";

const dom = new JSDOM("<!doctype html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
if (typeof globalThis.navigator === "undefined") {
  Object.defineProperty(globalThis, "navigator", { value: dom.window.navigator, configurable: true });
}
// renders are scheduled as in a browser (no act()): the tests wait for the DOM instead
globalThis.IS_REACT_ACT_ENVIRONMENT = false;

const React = await import("react");
const { createRoot } = await import("react-dom/client");
const { useWorker, useIs, useTick, useClock, useTransitions, WorkerProvider } = await import("amrpc/react");
const { createElement: h } = React;

const http = () => process.env.AMRPC_TEST_HTTP.replace(/\/$/, "");
async function sessions(worker) {
  const list = await (await fetch(`${http()}/api/workers`)).json();
  return list.find((w) => w.name === worker).sessions;
}

function View() {
  const a = useIs("A");
  const t = useTick("A");
  const clock = useClock();
  const { transitions } = useTransitions(50);
  const last = transitions.at(-1);
  return h("p", { id: "v" }, `${a}|${t}|${clock.A ?? "-"}|${transitions.length}|${last ? last.called.join(",") : ""}`);
}

function App({ url }) {
  const worker = useWorker(url, { stream: true, clientId: "react-test" });
  return h(
    "div",
    null,
    h("span", { id: "status" }, worker.status),
    h(WorkerProvider, { worker }, h(View)),
  );
}

/** A fresh container per test (a container takes one root). */
function mount() {
  const el = document.createElement("div");
  document.body.replaceChildren(el);
  return createRoot(el);
}

const text = (id) => document.getElementById(id)?.textContent ?? "";

async function flushUntil(cond, what) {
  await until(cond, 5000, what).catch((e) => {
    throw new Error(`${e.message}; view: ${text("status")} ${text("v")}`);
  });
}

test("hooks mount, follow another client's changes and clean up on unmount", async () => {
  const ctl = await client();
  await within(ctl.remove(["A", "C"]), 5000, "reset");
  const before = await sessions("test");
  const root = mount();
  root.render(h(App, { url: URL_OPEN() }));
  await flushUntil(() => text("status") === "ready", "connected");
  assert.equal(await sessions("test"), before + 1, "one session for the component");
  assert.ok(text("v").startsWith("false|"), text("v"));

  // another client's change re-renders the view, and the stream shows it
  await within(ctl.add1("A"), 5000, "add A");
  const tick = ctl.tick("A");
  await flushUntil(() => text("v").startsWith(`true|${tick}|${tick}|`), "A active with its tick");
  await flushUntil(() => text("v").endsWith("|A"), "the transition of add A");
  await within(ctl.remove1("A"), 5000, "remove A");
  await flushUntil(() => text("v").startsWith(`false|${tick + 1}|`), "A inactive");

  // unmount: the connection is closed (the server sees the session go)
  root.unmount();
  const end = Date.now() + 5000;
  while ((await sessions("test")) !== before) {
    if (Date.now() > end) assert.fail("the session stayed open after unmount");
    await new Promise((r) => setTimeout(r, 20));
  }
});

test("a URL change closes the old connection and opens the new one", async () => {
  const root = mount();
  const downloads = URL_OPEN().replace(/\/ws\/test$/, "/ws/downloads");
  const beforeTest = await sessions("test");
  const beforeDl = await sessions("downloads");
  root.render(h(App, { url: URL_OPEN() }));
  await flushUntil(() => text("status") === "ready", "connected to test");
  root.render(h(App, { url: downloads }));
  await flushUntil(() => text("status") === "ready", "connected to downloads");
  const end = Date.now() + 5000;
  for (;;) {
    const [t, d] = [await sessions("test"), await sessions("downloads")];
    if (t === beforeTest && d === beforeDl + 1) break;
    if (Date.now() > end) assert.fail(`sessions test ${t} (was ${beforeTest}), downloads ${d} (was ${beforeDl})`);
    await new Promise((r) => setTimeout(r, 20));
  }
  root.unmount();
});

test("a refused connection reports its error", async () => {
  const root = mount();
  const bad = URL_OPEN().replace(/\/ws\/test$/, "/ws/no-such-worker");
  function Failing() {
    const w = useWorker(bad, { reconnect: false, connRetries: 0 });
    return h("span", { id: "status" }, `${w.status}:${w.error ? w.error.code : ""}`);
  }
  root.render(h(Failing));
  await flushUntil(() => text("status") === "closed:UnknownWorker", "refused");
  root.unmount();
});
