// The video to continue: an MP4 the server decodes and carries on from its last frame.
// It goes in the `start` message as it is (the server reads it with FFmpeg), so the
// only check here is the size the server reads messages up to.

import { readAsDataUrl } from "./image-picker.js";

export class VideoPicker {
  constructor({ input, name, reset, onChange, onError }) {
    Object.assign(this, { input, name, reset, onChange, onError });
    this.dataUrl = null; // null = a new video from the start image
    this.maxMessageBytes = Infinity; // the server's limit, once its config is in
    input.addEventListener("change", () => {
      if (input.files.length) this.choose(input.files[0]);
    });
    reset.addEventListener("click", () => this.clear());
  }

  /** The video for the `start` message, or null when none is chosen. */
  value() {
    return this.dataUrl;
  }

  async choose(file) {
    // base64 makes bytes a third larger, and the rest of the message needs some room.
    if ((file.size * 4) / 3 + 64 * 1024 > this.maxMessageBytes) {
      this.clear();
      this.onError("video_too_large", `${(file.size / 2 ** 20).toFixed(1)} MiB`);
      return;
    }
    try {
      this.dataUrl = await readAsDataUrl(file);
    } catch {
      this.clear();
      this.onError("video_unreadable");
      return;
    }
    this.name.textContent = file.name;
    this.reset.hidden = false;
    this.onChange();
  }

  clear() {
    this.dataUrl = null;
    this.input.value = "";
    this.name.textContent = "None: a new video";
    this.reset.hidden = true;
    this.onChange();
  }
}
