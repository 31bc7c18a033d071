// The React hooks' tests: jsdom, at the server under test's own origin (its WebSocket checks the
// Origin), against the real `jobcast web` that tests/test_js_client.py starts.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.jsdom.js"],
    environment: "jsdom",
    environmentOptions: { jsdom: { url: process.env.JOBCAST_URL } },
    testTimeout: 30_000,
  },
});
