// Shared by the Node tests: the server under test (started by tests/test_js_client.py) and a
// promise for a watch's end.
import { EventSource } from "eventsource";
import { WebSocket } from "ws";

export const BASE = process.env.JOBCAST_URL;
if (!BASE) throw new Error("JOBCAST_URL: the jobcast web server to test against (tests/test_js_client.py sets it)");

// Node 20 has neither; Node 22+ has a WebSocket of its own. The tests use the packages either way,
// as a Node 20 user would.
export const transports = { EventSource, WebSocket };

// Watch until the watcher's state is final; resolves to the events and the states seen.
export function collect(watch, options = {}, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const events = [];
    const states = [];
    let watcher;
    const timer = setTimeout(() => {
      watcher?.stop();
      reject(new Error(`no end in ${timeoutMs} ms; states ${states.join(", ")}`));
    }, timeoutMs);
    watcher = watch({
      ...transports,
      ...options,
      base: BASE,
      onEvent: (event) => {
        events.push(event);
        options.onEvent?.(event, watcher);
      },
      onState: (state) => {
        states.push(state);
        if (state === "ended" || state === "error" || state === "stopped") {
          clearTimeout(timer);
          resolve({ events, states, watcher });
        }
      },
    });
  });
}
