// The package's Node entry: the wasm build plus a WebSocket. Node >= 22 has a global one; on
// older Nodes the `ws` package (a dependency of this package) is used, as Socket.IO's client
// does, so `connect()` works out of the box and `globalThis` is left alone.
"use strict";
const amrpc = require("./amrpc.js");

if (typeof globalThis.WebSocket !== "function") {
  let ws;
  try {
    ws = require("ws");
  } catch {
    // not installed (e.g. --omit=optional tooling): connect() then fails at once with NoWebSocket
  }
  if (ws) amrpc.useWebSocket(ws.WebSocket || ws);
}

module.exports = amrpc;
