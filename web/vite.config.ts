import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build lands inside the Python package: the gateway serves it at `/`.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../conveyor/gateway/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8080" } },
});
