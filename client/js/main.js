// Wires the page together: the server's config preselects the form, the setup form
// starts a session, server messages feed the live view and the timeline, and one
// render() keeps buttons and status in step with the session's phase.

import { describeError } from "./messages.js";
import { ImagePicker } from "./image-picker.js";
import { LiveView } from "./live-view.js";
import { LoraChooser } from "./lora-chooser.js";
import { describeModel, modelReady, watchModel } from "./model-status.js";
import { applyServerConfig, fetchServerConfig } from "./server-config.js";
import { SessionClient } from "./session-client.js";
import {
  forgetApiKey, forgetSession, loadApiKey, loadSession, loadTimeline, saveApiKey, saveSession, saveTimeline,
} from "./storage.js";
import { thumbnailDataUrl } from "./thumbnail.js";
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);

// idle: no session · starting: `start` sent, no `session` yet · running · paused
// stopping: `stop` sent, no `done` yet · ended: `done` received
const state = {
  config: null, // GET /config, once it is in
  model: undefined, // GET /healthz's model (null: loaded before the server answered); a first start downloads it
  phase: "idle",
  sessionId: null,
  token: null,
  progress: null, // last `progress` message while a section is being made
  sections: 0,
  frames: 0,
  fps: 30,
  reattaching: false,
  connection: "open", // "open" | "lost" | "failed"
  queuedSteer: null, // steer prompt sent but not yet seen on a section
  seenChunks: new Set(), // "branch:section:first_frame" of every section piece received
  replaying: false, // the frames now arriving belong to a piece that was already played
};

const view = new LiveView({
  viewer: $("viewer"),
  video: $("video"),
  canvas: $("canvas"),
  placeholder: $("viewer-empty"),
  badge: $("transport"),
  previewImage: $("preview"),
  previewBadge: $("preview-badge"),
  forceWebSocket: new URLSearchParams(location.search).get("transport") === "ws",
});
const timeline = new Timeline($("timeline"), $("timeline-empty"), $("branches"), { onRewind: rewind, onShow: render });
const picker = new ImagePicker({
  input: $("image-input"),
  dropzone: $("dropzone"),
  preview: $("image-preview"),
  name: $("image-name"),
  reset: $("image-reset"),
  onError: (code) => showError(code),
});
const loras = new LoraChooser({ field: $("lora-field"), list: $("lora-list") });
const client = new SessionClient({ onMessage, onFrame, onPreview, onConnection });

// ---------- server → page ----------

function onMessage(message) {
  switch (message.type) {
    case "session":
      // Sent for a new session and to confirm a re-attach; the video is asked for only
      // now, so that a stale saved session never reaches /webrtc/offer.
      state.sessionId = message.session_id;
      state.token = message.token;
      saveSession(state.sessionId, state.token);
      view.attach(state.sessionId, state.token);
      if (state.phase === "starting") state.phase = "running";
      break;
    case "progress":
      state.progress = message;
      timeline.progress(message);
      break;
    case "branch":
      timeline.addBranch(message);
      Object.assign(state, timeline.pathLength());
      state.progress = null;
      setQueuedSteer(null);
      saveTimeline(state.sessionId, timeline.snapshot());
      break;
    case "section": {
      const branch = message.branch ?? 0;
      state.fps = message.fps || state.fps;
      state.reattaching = false;
      if (state.progress && state.progress.section <= message.section) state.progress = null;
      if (state.queuedSteer !== null && message.prompt === state.queuedSteer) setQueuedSteer(null);
      // Frames follow their `section` message. After a reconnect the server re-sends
      // what it thinks was missed; playing it again would show old frames as live.
      const piece = `${branch}:${message.section}:${message.first_frame}`;
      state.replaying = state.seenChunks.has(piece);
      state.seenChunks.add(piece);
      timeline.addSection(message);
      Object.assign(state, timeline.pathLength());
      saveTimeline(state.sessionId, timeline.snapshot());
      break;
    }
    case "error":
      onError(message);
      break;
    case "done":
      state.phase = "ended";
      state.progress = null;
      state.sections = Math.max(state.sections, message.sections);
      state.frames = Math.max(state.frames, message.frames);
      timeline.removePending();
      view.clearPreview();
      setQueuedSteer(null);
      break;
  }
  render();
}

function onFrame(section, index, jpeg) {
  const branch = section.branch ?? 0;
  if (index === 0 && timeline.needsThumbnail(branch, section.section)) {
    const sessionId = state.sessionId;
    thumbnailDataUrl(jpeg)
      .then((src) => {
        if (sessionId !== state.sessionId) return; // a new session began meanwhile
        timeline.setThumbnail(branch, section.section, src);
        saveTimeline(sessionId, timeline.snapshot());
      })
      .catch(() => {}); // an undecodable frame leaves the card without a picture
  }
  if (!state.replaying) view.frame(jpeg, section);
}

/** A step preview of the section being made: in the live view and on its timeline card. */
function onPreview(preview, jpeg) {
  // One of a section already received (it came late) is out of date.
  if (preview.section < state.sections || state.phase === "ended") return;
  timeline.preview(preview, jpeg);
  view.preview(preview, jpeg);
}

function onError({ code, message }) {
  if (state.phase === "starting" && code === "unauthorized") {
    // The only key a `start` needs is the API key: ask for it again.
    forgetApiKey();
    showApiKeyField();
    showError("api_key_refused", message);
    state.phase = "idle";
    client.close();
    $("api-key").value = "";
    render(); // enables the form again, so the field can take the focus
    $("api-key").focus();
    return;
  }
  showError(code, message);
  if (code === "not_found" || code === "unauthorized") {
    // The saved session is gone (server restarted, or it expired): start afresh.
    forgetSession();
    resetSession();
  } else if (state.phase === "starting") {
    // A refused `start` (bad image, long prompt, busy server) made no session.
    state.phase = "idle";
    client.close();
  } else if (code === "internal" || (state.sections === 0 && state.queuedSteer === null)) {
    // The session failed: the server ends it after an internal error, and an error before
    // the first section that no steer explains means the engine refused the start.
    state.phase = "ended";
    state.progress = null;
    timeline.removePending();
    view.clearPreview();
  }
}

function onConnection(connection) {
  state.connection = connection;
  if (connection === "open") {
    hideError();
  } else if (connection === "lost") {
    showError("connection_lost");
  } else if (state.phase !== "idle" && state.phase !== "ended") {
    showError("connection_failed");
    state.phase = state.sessionId ? "ended" : "idle";
  }
  render();
}

// ---------- page → server ----------

function startSession(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) {
    showError("prompt_missing");
    $("prompt").focus();
    return;
  }
  const apiKey = $("api-key").value.trim();
  if (state.config.api_key_required && !apiKey) {
    showError("api_key_missing");
    $("api-key").focus();
    return;
  }
  hideError();
  const [width, height] = $("resolution").value.split("x").map(Number);
  const message = {
    prompt,
    width,
    height,
    seed: integer($("seed"), 0),
    steps: integer($("steps"), state.config.defaults.steps),
    sections: $("until-stopped").checked ? 0 : integer($("sections"), 1),
    transition: transition(),
    // JPEG frames even when WebRTC works: the timeline's thumbnails come from them, and
    // the view can fall back to them at any time without a new session.
    media: "jpeg",
  };
  const image = picker.value();
  if ($("text-start").checked) message.start = "text";
  else if (image) message.image = image;
  const chosen = loras.value();
  if (chosen.length) message.loras = chosen;
  if (state.config.api_key_required) {
    message.api_key = apiKey;
    saveApiKey(apiKey);
  }

  forgetSession();
  resetSession();
  state.phase = "starting";
  render();
  client.start(message);
}

function reattach(saved) {
  resetSession();
  Object.assign(state, { phase: "running", sessionId: saved.sessionId, token: saved.token });
  state.reattaching = true;
  // The server re-sends only sections no page has received; the rest comes from storage.
  const entries = loadTimeline(saved.sessionId);
  if (entries) timeline.restore(entries);
  Object.assign(state, timeline.pathLength());
  state.fps = [...timeline.cards.values()].at(-1)?.fps ?? state.fps;
  render();
  client.reattach(saved.sessionId, saved.token);
}

function resetSession() {
  client.close();
  view.detach();
  timeline.clear();
  $("branch-player").hidden = true;
  $("branch-player").removeAttribute("src");
  setQueuedSteer(null);
  Object.assign(state, {
    phase: "idle", sessionId: null, token: null, progress: null,
    sections: 0, frames: 0, reattaching: false, connection: "open",
  });
  state.seenChunks.clear();
}

function command(type) {
  if (!client.send({ type })) return;
  const next = { pause: "paused", resume: "running", stop: "stopping" }[type];
  // The current section is finished either way (pause and stop act at its end), so
  // its progress card stays until its `section` message arrives.
  state.phase = next;
  render();
  // The clicked button may have just been hidden; keep focus on its partner.
  if (type === "pause") $("resume").focus();
  if (type === "resume") $("pause").focus();
}

function steer(event) {
  event.preventDefault();
  const input = $("steer-prompt");
  const prompt = input.value.trim();
  if (!prompt || !client.send({ type: "steer", prompt, transition: transition() })) return;
  input.value = "";
  setQueuedSteer(prompt);
}

/** "Rewind here" on a timeline card: that section again, with the steer box's prompt or its own. */
function rewind({ branch, section, prompt }) {
  const input = $("steer-prompt");
  const chosen = input.value.trim() || prompt;
  if (!client.send({ type: "rewind", section, prompt: chosen, branch })) return;
  input.value = "";
  $("steer-hint").textContent = `Rewinding to section ${section + 1} at the next section boundary: “${chosen}”`;
}

/** A signed link to the MP4 of the branch on display (short-lived, so the session's token
 * never sits in a URL); null after showing why there is none. */
async function branchLink() {
  const response = await fetch(`/sessions/${encodeURIComponent(state.sessionId)}/download`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: state.token }),
  });
  const answer = await response.json();
  if (!response.ok) {
    showError(answer.code, answer.message);
    return null;
  }
  return `${answer.url}&branch=${timeline.shown}`;
}

/** Play the branch on display from its start, under the timeline. */
async function watchBranch() {
  try {
    const url = await branchLink();
    if (url === null) return;
    const player = $("branch-player");
    player.src = url;
    player.hidden = false;
    await player.play();
  } catch (error) {
    showError("download_failed", error.message);
  }
}

async function download() {
  const sessionId = state.sessionId;
  try {
    const url = await branchLink();
    if (url === null) return;
    const link = document.createElement("a");
    link.href = url;
    const branch = timeline.branches.size > 1 ? `-branch${timeline.shown + 1}` : "";
    link.download = `framepack-live-${sessionId}${branch}.mp4`;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    showError("download_failed", error.message);
  }
}

function showApiKeyField() {
  $("api-key-field").hidden = false;
}

function setQueuedSteer(prompt) {
  state.queuedSteer = prompt;
  $("steer-hint").textContent = prompt === null
    ? "Restarts the section being made when it is early enough, else takes effect from the next one."
    : `Steering to “${prompt}”: on screen with the first section made with it.`;
}

// ---------- rendering ----------

function render() {
  const { phase } = state;
  document.body.dataset.phase = phase; // the narrow layout hides locked settings by phase
  const live = phase === "running" || phase === "paused";
  $("setup-fields").disabled = state.config === null || phase === "starting" || live;
  $("start").textContent = phase === "ended" || phase === "stopping" ? "Start a new video" : "Start";
  $("start").disabled = !modelReady(state.model);
  $("pause").hidden = phase === "paused";
  $("pause").disabled = phase !== "running";
  $("resume").hidden = phase !== "paused";
  $("stop").disabled = !live;
  $("steer-prompt").disabled = !live;
  $("steer-send").disabled = !live;

  const nothing = state.sessionId === null || timeline.pathLength(timeline.shown).sections === 0;
  $("download").disabled = nothing;
  $("download").textContent = timeline.branches.size > 1 ? `Download branch ${timeline.shown + 1}` : "Download MP4";
  $("branch-watch").disabled = nothing;
  timeline.setRewindable(live);

  $("status").textContent = statusText();
}

function statusText() {
  if (state.connection === "lost") return "Reconnecting…";
  const { phase, progress, sections, frames, fps } = state;
  const made = `${sections} ${sections === 1 ? "section" : "sections"}, ${(frames / fps).toFixed(1)} s`;
  switch (phase) {
    case "idle":
      if (!state.config || state.model === undefined) return "Loading the server's settings…";
      return modelReady(state.model) ? "Ready. Write a prompt and press Start." : describeModel(state.model);
    case "starting": return "Starting…";
    case "paused": return `Paused after the current section (${made}).`;
    case "stopping": return "Stopping…";
    case "ended": return `Finished: ${made}.`;
  }
  if (progress) return `Making section ${progress.section + 1}: step ${progress.step} of ${progress.steps}.`;
  // The protocol does not say whether a re-attached session is paused; say what is known.
  if (state.reattaching) return "Re-attached to your last session; waiting for its next section.";
  return sections ? `Generating (${made} so far)…` : "Generating…";
}

function showError(code, detail) {
  $("error-text").textContent = describeError(code, detail);
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

/** Sections over which a new prompt blends in: the field's, else the server's default. */
function transition() {
  return Math.max(0, integer($("transition"), state.config.defaults.transition ?? 0));
}

function integer(input, fallback) {
  const value = Number.parseInt(input.value, 10);
  return Number.isFinite(value) ? value : fallback;
}

// ---------- wiring ----------

$("setup").addEventListener("submit", startSession);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("setup").requestSubmit();
});
$("until-stopped").addEventListener("change", (event) => {
  $("sections").disabled = event.target.checked;
});
$("text-start").addEventListener("change", (event) => {
  // The image is not used while the prompt alone makes the start.
  $("dropzone").classList.toggle("unused", event.target.checked);
  $("image-input").disabled = event.target.checked;
});
$("seed-random").addEventListener("click", () => {
  $("seed").value = Math.floor(Math.random() * 2 ** 31);
});
$("pause").addEventListener("click", () => command("pause"));
$("resume").addEventListener("click", () => command("resume"));
$("stop").addEventListener("click", () => command("stop"));
$("steer").addEventListener("submit", steer);
$("download").addEventListener("click", download);
$("branch-watch").addEventListener("click", watchBranch);
$("error-dismiss").addEventListener("click", hideError);

async function init() {
  render();
  try {
    state.config = await fetchServerConfig();
  } catch (error) {
    showError("config_failed", error.message);
    return; // the form stays disabled: without the server there is nothing to start
  }
  applyServerConfig(state.config, {
    resolution: $("resolution"),
    steps: $("steps"),
    sections: $("sections"),
    transition: $("transition"),
    modelInfo: $("model-info"),
  });
  loras.offer(state.config.loras);
  view.iceServers = state.config.ice_servers;
  // Asked for once: a key this browser kept is sent without showing the field again.
  $("api-key").value = loadApiKey();
  if (state.config.api_key_required && !$("api-key").value) showApiKeyField();
  watchModel((model) => {
    state.model = model;
    render();
  });
  const saved = loadSession();
  if (saved) reattach(saved);
  else render();
}

init();
