/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// Tauri loads `dist/` through its own protocol; relative asset URLs work from any origin.
export default defineConfig({
  base: "./",
  plugins: [vue()],
  clearScreen: false,
  define: {
    __VUE_I18N_FULL_INSTALL__: false,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
    __VUE_PROD_DEVTOOLS__: false,
  },
  server: {
    port: 1420,
    strictPort: true,
    watch: { ignored: ["**/src-tauri/**"] },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2021",
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: "happy-dom",
    include: ["tests/**/*.test.ts"],
    restoreMocks: true,
    // Only catches hangs: the 1000-row audit page alone can take over 5 s on a loaded machine.
    testTimeout: 30_000,
    setupFiles: ["tests/setup.ts"],
  },
});
