import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API and the WebSocket to an `amrpc serve` on :8080; `npm run build`
// writes dist/, which `amrpc serve` serves at /.
export default defineConfig({
  plugins: [react()],
  // amrpc is linked from target/npm/amrpc: its hooks must see this app's React
  resolve: { dedupe: ["react", "react-dom"] },
  optimizeDeps: { exclude: ["amrpc"] },
  server: {
    fs: { allow: ["../.."] },
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/ws": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
  build: { outDir: "dist", target: "es2022", chunkSizeWarningLimit: 1024 },
});
