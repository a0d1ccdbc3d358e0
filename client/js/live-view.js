// The main view: WebRTC into the <video> when it works, WebSocket JPEGs on the <canvas>
// when it does not. The session always asks for JPEG frames (the timeline's thumbnails
// and this fallback need them), so falling back never has to renegotiate anything.
// While a section is denoised, its step previews (always over the WebSocket) are drawn
// over either, marked as such, until its decoded frames come.

import { CanvasPlayer } from "./canvas-player.js";
import { receiveVideo } from "./webrtc.js";

// How long WebRTC may take to show a picture once the server has frames to send.
const FIRST_FRAME_TIMEOUT_MS = 15000;
// Offers after a lost peer or a failed offer, 1 s, 2 s, 3 s apart; then WebSocket frames only.
const REOFFERS = 3;
const REOFFER_DELAY_MS = 1000;

const BADGES = {
  none: ["No video yet", ""],
  connecting: ["Connecting video…", "Trying WebRTC"],
  reconnecting: ["Reconnecting video…", "WebSocket frames while WebRTC is offered again"],
  webrtc: ["WebRTC", "Live video over WebRTC"],
  ws: ["WebSocket fallback", "Live video from JPEG frames over the WebSocket"],
};

export class LiveView {
  constructor({ viewer, video, canvas, placeholder, badge, previewImage, previewBadge, forceWebSocket }) {
    Object.assign(this, { viewer, video, canvas, placeholder, badge, previewImage, previewBadge, forceWebSocket });
    this.player = new CanvasPlayer(canvas, () => {
      this.placeholder.hidden = true;
    });
    this.pc = null;
    this.iceServers = []; // the server's STUN/TURN servers, set once its config is in
    this.sessionId = null;
    this.attempt = 0; // bumps per attach, so a late WebRTC answer for an old session is dropped
    this.deadline = null;
    this.shownPreview = null; // the preview message whose picture is up, or null
    this.nextPreview = null; // the newest preview not yet up: {message, url}
    this.previewTimer = null;
    this.playedAt = 0; // performance.now() by which the decoded frames received will have played
    this.setMode("none");
  }

  /** Begin showing a session (new or re-attached); a no-op for the one already shown,
   *  so that a reconnected WebSocket does not restart the video. */
  attach(sessionId, token) {
    if (sessionId === this.sessionId) return;
    this.detach();
    this.sessionId = sessionId;
    this.token = token;
    this.reoffers = 0;
    if (this.forceWebSocket) {
      this.fallBack("forced by ?transport=ws");
      return;
    }
    this.setMode("connecting");
    this.offer();
  }

  /** Ask the server for the session's WebRTC track; the picture switches to it once the
   *  first frame shows. */
  offer() {
    const attempt = this.attempt;
    receiveVideo(this.sessionId, this.token, this.iceServers)
      .then(({ pc, stream }) => {
        if (attempt !== this.attempt || !this.negotiating()) {
          pc.close();
          return;
        }
        this.pc = pc;
        pc.addEventListener("connectionstatechange", () => {
          if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
            this.peerLost(pc, `the WebRTC connection ${pc.connectionState}`);
          }
        });
        this.video.srcObject = stream;
        // Muted autoplay is always allowed; a rejected play() would only mean a paused
        // picture, which the first-frame deadline below turns into a fallback.
        this.video.play().catch(() => {});
        this.onFirstVideoFrame(() => {
          if (attempt === this.attempt && this.pc === pc && this.negotiating()) this.useWebRTC();
        });
      })
      .catch((error) => {
        if (attempt === this.attempt) this.peerLost(null, error.message);
      });
  }

  negotiating() {
    return this.mode === "connecting" || this.mode === "reconnecting";
  }

  /** The peer (or the offer) failed. A peer lives in one server process, which may have gone
   *  while the session goes on elsewhere: show the session's WebSocket frames at once and offer
   *  again a few times, through whichever server process answers now; the new track starts at
   *  the live edge. */
  peerLost(pc, reason) {
    if (pc !== this.pc) return;
    this.fallBack(reason);
    if (this.reoffers >= REOFFERS) return;
    this.reoffers++;
    const attempt = ++this.attempt;
    this.retryTimer = setTimeout(() => {
      if (attempt !== this.attempt) return;
      this.setMode("reconnecting", reason);
      this.offer();
    }, REOFFER_DELAY_MS * this.reoffers);
  }

  /** Stop showing the current session: close WebRTC and drop queued frames. */
  detach() {
    this.sessionId = null;
    this.attempt++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadline);
    this.deadline = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.video.srcObject = null;
    this.player.stop();
    this.player.clear();
    this.clearPreview();
    this.playedAt = 0;
    this.setMode("none");
  }

  /** Every WebSocket JPEG passes through here, whichever path is on screen.
   *  @param {object} section  the `section` message the frame belongs to */
  frame(jpeg, { section, fps, width, height }) {
    this.viewer.style.setProperty("--ratio", `${width} / ${height}`);
    // Frames play one after another at the session's fps on either path (the WebRTC track
    // is fed the same frames), so this is when the view will have shown them all.
    this.playedAt = Math.max(performance.now(), this.playedAt) + 1000 / (fps || 30);
    this.settlePreviews(section);
    if (this.mode === "webrtc") return;
    // Buffered while WebRTC connects, so a fallback can show them at once (and shown while
    // it reconnects).
    this.player.push(jpeg, fps);
    if (this.negotiating() && this.deadline === null) {
      this.deadline = setTimeout(
        () => this.peerLost(this.pc, `no WebRTC picture within ${FIRST_FRAME_TIMEOUT_MS / 1000} s`),
        FIRST_FRAME_TIMEOUT_MS,
      );
    }
  }

  /** A step preview of the section being denoised. It goes up once the frames already
   *  received have played (until then they are newer news than a rough preview of what
   *  follows them), and stays until that section's frames come. */
  preview(message, jpeg) {
    if (this.sessionId === null) return;
    if (this.nextPreview) URL.revokeObjectURL(this.nextPreview.url);
    this.nextPreview = { message, url: URL.createObjectURL(jpeg) };
    this.schedulePreview();
  }

  schedulePreview() {
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.showPreview(), Math.max(0, this.playedAt - performance.now()));
  }

  showPreview() {
    const next = this.nextPreview;
    if (!next) return;
    this.nextPreview = null;
    const image = this.previewImage;
    const old = image.src;
    image.src = next.url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old); // what is painted stays painted
    image
      .decode()
      .then(() => {
        if (image.src !== next.url) return; // a newer preview, or the frames, came meanwhile
        const { section, step, steps, width, height } = next.message;
        this.shownPreview = next.message;
        this.viewer.style.setProperty("--ratio", `${width} / ${height}`);
        this.viewer.classList.add("previewing");
        this.viewer.dataset.preview = `${section}:${step}`;
        image.hidden = false;
        this.previewBadge.hidden = false;
        // Step 0 is the start image, shown while the server encodes it.
        this.previewBadge.textContent = step ? `preview · step ${step}/${steps}` : "preview · start image";
        this.previewBadge.title = step
          ? `A rough preview of section ${section + 1} while it is made; its frames replace it`
          : "The start image the video goes on from; the first section's frames replace it";
        this.placeholder.hidden = true;
      })
      .catch(() => {}); // an undecodable preview is skipped; the next one repairs the picture
  }

  /** Frames of `section` came: previews of it (or earlier ones) are out of date, and a
   *  preview of a later one waits until these frames have played. */
  settlePreviews(section) {
    if (this.shownPreview && section >= this.shownPreview.section) this.hidePreview();
    if (!this.nextPreview) return;
    if (section >= this.nextPreview.message.section) this.clearPreview();
    else this.schedulePreview();
  }

  hidePreview() {
    const image = this.previewImage;
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    image.removeAttribute("src");
    image.hidden = true;
    this.shownPreview = null;
    this.previewBadge.hidden = true;
    this.viewer.classList.remove("previewing");
    delete this.viewer.dataset.preview;
  }

  /** No preview any more, shown or waiting (the section came, or the session went). */
  clearPreview() {
    clearTimeout(this.previewTimer);
    if (this.nextPreview) URL.revokeObjectURL(this.nextPreview.url);
    this.nextPreview = null;
    this.hidePreview();
  }

  useWebRTC() {
    clearTimeout(this.deadline);
    this.deadline = null;
    this.reoffers = 0;
    this.player.stop();
    this.player.clear();
    this.setMode("webrtc");
  }

  fallBack(reason) {
    if (this.mode === "ws") return;
    clearTimeout(this.deadline);
    this.deadline = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.video.srcObject = null;
    this.setMode("ws", reason);
    this.player.start();
  }

  onFirstVideoFrame(callback) {
    if ("requestVideoFrameCallback" in this.video) {
      this.video.requestVideoFrameCallback(() => callback());
    } else {
      this.video.addEventListener("playing", callback, { once: true });
    }
  }

  setMode(mode, reason) {
    this.mode = mode;
    const [text, title] = BADGES[mode];
    this.badge.dataset.kind = mode;
    this.badge.textContent = text;
    this.badge.title = reason ? `${title} (${reason})` : title;
    // The video stays laid out while connecting: a hidden <video> presents no frames,
    // so the first-frame check would never fire. While reconnecting, the canvas (on top)
    // keeps playing the WebSocket frames over it.
    this.video.hidden = mode === "none" || mode === "ws";
    this.canvas.hidden = mode !== "ws" && mode !== "reconnecting";
    this.placeholder.hidden = mode === "webrtc" || this.shownPreview !== null;
  }
}
