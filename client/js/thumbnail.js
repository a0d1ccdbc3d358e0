// Timeline thumbnails as small JPEG data URLs: small enough to keep in localStorage
// for the reload, and independent of the frame's Blob lifetime.

const WIDTH = 192;

export async function thumbnailDataUrl(jpeg) {
  const bitmap = await createImageBitmap(jpeg);
  return scaledJpegDataUrl(bitmap, Math.min(1, WIDTH / bitmap.width), 0.8);
}

// Draws `bitmap` scaled by `scale` and returns it as a JPEG data URL; closes the bitmap.
export function scaledJpegDataUrl(bitmap, scale, quality) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", quality);
}
