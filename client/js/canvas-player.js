// Plays WebSocket JPEG frames on a canvas at the session's fps. Frames arrive in bursts
// (a whole section at once after it is decoded), so they are queued and painted on a
// clock instead of as they come. When generation is slower than real time the queue
// runs dry and the last frame stays up until the next section arrives.

const MAX_BUFFER_SECONDS = 6; // beyond this the page is behind live: drop the oldest frames

export class CanvasPlayer {
  /** @param {() => void} onPicture  called after each painted frame */
  constructor(canvas, onPicture) {
    this.canvas = canvas;
    this.onPicture = onPicture;
    this.context = canvas.getContext("2d");
    this.queue = []; // decoded ImageBitmaps, oldest first
    this.decoding = Promise.resolve(); // chain that keeps decode order = arrival order
    this.fps = 30;
    this.nextDue = 0;
    this.running = false;
    this.generation = 0; // bumps on clear() so late decodes of old frames are discarded
    this.tick = this.tick.bind(this);
  }

  /** Queue one JPEG; decoding happens off the main thread via createImageBitmap. */
  push(jpeg, fps) {
    this.fps = fps || this.fps;
    const generation = this.generation;
    this.decoding = this.decoding
      .then(() => createImageBitmap(jpeg))
      .then((bitmap) => {
        if (generation !== this.generation) {
          bitmap.close();
          return;
        }
        this.queue.push(bitmap);
        const limit = Math.ceil(this.fps * MAX_BUFFER_SECONDS);
        while (this.queue.length > limit) this.queue.shift().close();
      })
      // An undecodable frame is skipped; the next one repairs the picture.
      .catch(() => {});
  }

  start() {
    if (this.running) return;
    this.running = true;
    requestAnimationFrame(this.tick);
  }

  stop() {
    this.running = false;
  }

  /** Forget queued frames (a new session, or WebRTC took over). */
  clear() {
    this.generation++;
    for (const bitmap of this.queue) bitmap.close();
    this.queue = [];
  }

  tick(now) {
    if (!this.running) return;
    const interval = 1000 / this.fps;
    // After a stall, restart the clock rather than rushing through the backlog.
    if (now - this.nextDue > interval * 2) this.nextDue = now;
    if (this.queue.length && now >= this.nextDue) {
      this.draw(this.queue.shift());
      this.nextDue += interval;
    }
    requestAnimationFrame(this.tick);
  }

  draw(bitmap) {
    if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
      this.canvas.width = bitmap.width;
      this.canvas.height = bitmap.height;
    }
    this.context.drawImage(bitmap, 0, 0);
    bitmap.close();
    this.onPicture();
  }
}
