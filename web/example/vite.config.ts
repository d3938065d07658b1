import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The page talks to an `amrpc serve` (default http://127.0.0.1:8080; AMRPC_SERVER overrides it)
// through this dev/preview server's proxy, so it connects to its own origin like a deployed app.
const target = process.env.AMRPC_SERVER ?? "http://127.0.0.1:8080";
const proxy = {
  "/ws": { target: target.replace(/^http/, "ws"), ws: true },
  "/api": target,
};

export default defineConfig({
  plugins: [react()],
  // only needed because amrpc is linked from this repository's build (target/npm/amrpc); an app
  // that installs amrpc from npm can drop these two lines
  resolve: { dedupe: ["react", "react-dom"] },
  optimizeDeps: { exclude: ["amrpc"] },
  server: { proxy, fs: { allow: ["../.."] } },
  preview: { proxy },
});
