// Timeline thumbnails as small JPEG data URLs: small enough to keep in localStorage
// for the reload, and independent of the frame's Blob lifetime.

const WIDTH = 192;

export async function thumbnailDataUrl(jpeg) {
  const bitmap = await createImageBitmap(jpeg);
  const scale = Math.min(1, WIDTH / bitmap.width);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", 0.8);
}
