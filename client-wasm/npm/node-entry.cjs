// The package's Node entry: the wasm build plus a WebSocket. Node >= 22 has a global one; on
// older Nodes the `ws` package (a dependency of this package) is used, as Socket.IO's client
// does, so `connect()` works out of the box and `globalThis` is left alone.
"use strict";

if (typeof globalThis.WebSocket !== "function") {
  let ws;
  try {
    ws = require("ws");
  } catch {
    // not installed: connect() then fails at once with NoWebSocket
  }
  if (ws) require("./amrpc.js").useWebSocket(ws.WebSocket || ws);
}

// (this exact form lets Node's ESM loader see the named exports of the CommonJS build)
module.exports = require("./amrpc.js");
