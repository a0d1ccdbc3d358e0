// What the server says about itself (GET /config): its model and the settings it was made
// for, the session defaults, the limits, the ICE servers for WebRTC and whether starting a
// video needs an API key. The form preselects the server's defaults and marks the model's
// resolution; every other choice stays available.

/** @returns {Promise<object>} the server's answer */
export async function fetchServerConfig() {
  const response = await fetch("/config", { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

/** Preselect and bound the form's choices by the server's config. */
export function applyServerConfig(config, { resolution, steps, sections, transition, modelInfo }) {
  const { model, defaults, limits } = config;
  if (model) {
    const option = resolutionOption(resolution, model.width, model.height);
    option.dataset.model = "true";
    option.textContent = `${option.textContent} · the model's`;
    modelInfo.textContent =
      `Model: ${model.name}, made for ${model.width} × ${model.height} in ${model.steps} steps`;
  }
  modelInfo.hidden = !model;
  resolution.value = resolutionOption(resolution, defaults.width, defaults.height).value;
  for (const option of resolution.options) {
    // Sizes over the server's limit would only be refused.
    option.disabled = pixels(option.value) > limits.max_pixels;
  }
  steps.max = limits.max_steps;
  steps.value = defaults.steps;
  sections.max = limits.max_sections;
  if (Number(sections.value) > limits.max_sections) sections.value = limits.max_sections;
  // Servers from before transitions did not say theirs: an immediate switch is what they do.
  transition.value = defaults.transition ?? 0;
  transition.max = limits.max_sections;
}

/** The <option> for width x height, added in order of size when the list lacks it. */
function resolutionOption(select, width, height) {
  const value = `${width}x${height}`;
  const existing = [...select.options].find((option) => option.value === value);
  if (existing) return existing;
  const option = new Option(`${width} × ${height}`, value);
  const larger = [...select.options].find((other) => pixels(other.value) > width * height);
  select.add(option, larger || null);
  return option;
}

function pixels(value) {
  const [width, height] = value.split("x").map(Number);
  return width * height;
}
