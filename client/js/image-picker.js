// The start image: drag and drop onto the drop zone or the file picker inside it.
// The server reads PNG and JPEG; anything else the browser can decode (WebP, GIF, …),
// and very large photos, are re-encoded here so that the `start` message stays small.

import { scaledJpegDataUrl } from "./thumbnail.js";

const MAX_SIDE = 1280;
// The server reads messages up to 4 MiB; base64 makes bytes a third larger.
const MAX_BYTES = 2 * 1024 * 1024;

export class ImagePicker {
  constructor({ input, dropzone, preview, name, reset, onError }) {
    Object.assign(this, { input, dropzone, preview, name, reset, onError });
    this.defaultSrc = preview.getAttribute("src");
    this.dataUrl = null; // null = let the server use its built-in image

    input.addEventListener("change", () => {
      if (input.files.length) this.choose(input.files[0]);
    });
    reset.addEventListener("click", () => this.useDefault());
    dropzone.addEventListener("dragover", (event) => {
      event.preventDefault(); // allows the drop
      dropzone.classList.add("dragging");
    });
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("dragging");
      const file = event.dataTransfer.files[0];
      if (file) this.choose(file);
    });
  }

  /** The image for the `start` message, or null for the server's default. */
  value() {
    return this.dataUrl;
  }

  async choose(file) {
    try {
      this.dataUrl = await toDataUrl(file);
    } catch {
      this.onError("image_unreadable");
      return;
    }
    this.preview.src = this.dataUrl;
    this.preview.alt = `Chosen start image: ${file.name}`;
    this.name.textContent = file.name;
    this.reset.hidden = false;
  }

  useDefault() {
    this.dataUrl = null;
    this.input.value = "";
    this.preview.src = this.defaultSrc;
    this.preview.alt = "The built-in start image";
    this.name.textContent = "Built-in default";
    this.reset.hidden = true;
  }
}

async function toDataUrl(file) {
  const bitmap = await createImageBitmap(file); // throws for anything that is not an image
  const small = Math.max(bitmap.width, bitmap.height) <= MAX_SIDE && file.size <= MAX_BYTES;
  if (small && (file.type === "image/png" || file.type === "image/jpeg")) {
    bitmap.close();
    return readAsDataUrl(file);
  }
  return scaledJpegDataUrl(bitmap, Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height)), 0.92);
}

/** A file's bytes as a base64 data URL, the form `start` messages carry files in. */
export function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
