// The console is built into the directory stratad serves (STRATA_WEB_OUT, set by the CMake
// target `web_console`; default web/dist). Everything is bundled: no CDN at run time.
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

export default defineConfig({
  base: "/",
  build: {
    outDir: process.env.STRATA_WEB_OUT || "dist",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npx vite` for front-end work: the API of a running stratad (STRATA_SERVER).
    proxy: { "/api": process.env.STRATA_SERVER || "http://127.0.0.1:8080" },
  },
});
