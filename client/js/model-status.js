// The server's model while a first start fetches it: the cluster's stages download a real model
// (about 40 GB) before they can run, and GET /healthz says how far they are. Until it says
// `ready` the page keeps Start disabled and shows the figures, asking again every few seconds.
// The words match the terminal of `framepack-live serve` (cluster/model_status.py, describe).

export const POLL_MS = 3000;

/** The `model` of GET /healthz; null where the server loaded its model before answering. */
export async function fetchModelStatus() {
  const response = await fetch("/healthz", { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()).model ?? null;
}

/** Whether sessions can start: false while the first answer is awaited (`undefined`). */
export function modelReady(model) {
  return model === null || model?.state === "ready";
}

/** Calls `onChange(model)` with each answer, every POLL_MS until the model is ready. */
export async function watchModel(onChange) {
  for (;;) {
    try {
      const model = await fetchModelStatus();
      onChange(model);
      if (modelReady(model)) return;
    } catch {
      // The server is restarting or unreachable: the next poll tells.
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** One line for people: "Downloading framepack-f1: 3.1 of 40.2 GB, 85.0 MB/s, about 8 min left". */
export function describeModel(model) {
  const { name, state } = model;
  switch (state) {
    case "failed": return `${name} failed to load: ${model.error}`;
    case "starting": return `Starting the stages of ${name}…`;
    case "checking": return `Checking the hub for ${name}…`;
    case "loading": return `Loading ${name}…`;
    case "warming": return `Warming up ${name}…`;
    case "ready": return `${name} is ready.`;
  }
  const [total, unit] = size(model.total_bytes).split(" ");
  let line = `Downloading ${name}: ${size(model.done_bytes, unit).split(" ")[0]} of ${total} ${unit}`;
  if (model.bytes_per_second) line += `, ${size(model.bytes_per_second)}/s`;
  if (model.seconds_left !== null) line += `, about ${duration(model.seconds_left)} left`;
  return line;
}

const UNITS = { GB: 1e9, MB: 1e6, kB: 1e3, B: 1 };

function size(count, unit) {
  unit ??= Object.keys(UNITS).find((u) => count >= UNITS[u]) ?? "B";
  const value = count / UNITS[unit];
  return value < 100 && unit !== "B" ? `${value.toFixed(1)} ${unit}` : `${Math.round(value)} ${unit}`;
}

function duration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
