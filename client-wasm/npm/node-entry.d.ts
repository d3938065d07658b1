// The Node entry re-exports the wasm build (see node-entry.cjs).
export * from "./amrpc";
