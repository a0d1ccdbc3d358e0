// The main view: WebRTC into the <video> when it works, WebSocket JPEGs on the <canvas>
// when it does not. The session always asks for JPEG frames (the timeline's thumbnails
// and this fallback need them), so falling back never has to renegotiate anything.

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
  constructor({ viewer, video, canvas, placeholder, badge, forceWebSocket }) {
    Object.assign(this, { viewer, video, canvas, placeholder, badge, forceWebSocket });
    this.player = new CanvasPlayer(canvas, () => {
      this.placeholder.hidden = true;
    });
    this.pc = null;
    this.iceServers = []; // the server's STUN/TURN servers, set once its config is in
    this.sessionId = null;
    this.attempt = 0; // bumps per attach, so a late WebRTC answer for an old session is dropped
    this.deadline = null;
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
    this.setMode("none");
  }

  /** Every WebSocket JPEG passes through here, whichever path is on screen. */
  frame(jpeg, fps, width, height) {
    this.viewer.style.setProperty("--ratio", `${width} / ${height}`);
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
    this.placeholder.hidden = mode === "webrtc";
  }
}
