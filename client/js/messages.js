// Plain-language texts for the server's stable error codes (DESIGN.md) and for the
// page's own failures. The server's `message` is shown only as extra detail, because
// it is written for whoever reads the logs, not always for the person at the page.

const ERROR_TEXT = {
  bad_request: "The server could not use that request. Check the settings and try again.",
  bad_image: "That start image could not be used. Try a different PNG or JPEG.",
  prompt_too_long: "That prompt is too long. Shorten it and try again.",
  unauthorized: "This page no longer has the key to that session. Start a new video.",
  busy: "The server is busy making other videos. Try again in a moment.",
  not_found: "That session no longer exists on the server. Start a new video.",
  internal: "Something went wrong on the server. What was made so far can still be downloaded.",
  // Codes the page raises itself.
  api_key_missing: "This server needs an API key to start a video. Enter yours.",
  api_key_refused: "The server did not accept that API key. Check it and enter it again.",
  config_failed: "Could not read the server's settings. Check that it is running and reload the page.",
  download_failed: "The download could not be started. Try again.",
  connection_lost: "Lost the connection to the server. Trying to reconnect…",
  connection_failed: "Could not reach the server. Check that it is running and reload the page.",
  image_unreadable: "That file could not be read as an image.",
  prompt_missing: "Write a prompt first.",
};

/** The sentence to show for an error code, with the server's detail when it adds something. */
export function describeError(code, detail) {
  const text = ERROR_TEXT[code] || "Something unexpected happened.";
  return detail && detail !== text ? `${text} (${detail})` : text;
}

/** m:ss.s for a playback position in seconds. */
export function formatTime(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = (seconds - minutes * 60).toFixed(1).padStart(4, "0");
  return `${minutes}:${rest}`;
}
