// Preloaded into a worker process by stderr.test.ts (main thread only; the SDK's workflow threads load it too):
// once the worker's modules are loaded, does what the MQTT target's limiter once did, 11 listeners on one
// AbortSignal, so that Node emits MaxListenersExceededWarning.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a plain preload script, not a module of the project
if (require('node:worker_threads').isMainThread) {
  setTimeout(() => {
    const controller = new AbortController();
    for (let i = 0; i < 11; i++) controller.signal.addEventListener('abort', () => undefined);
  }, 0);
}
