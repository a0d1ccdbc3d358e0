// The page's side of one session over the WebSocket: start it or re-attach to it, send
// commands, and re-attach on its own when the connection drops before the session ends
// (the server re-sends the sections this page missed).

import { Connection } from "./connection.js";

const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

export class SessionClient {
  /**
   * @param {object} handlers
   * @param {(msg: object) => void} handlers.onMessage
   * @param {(section: object, index: number, jpeg: Blob) => void} handlers.onFrame
   * @param {(preview: object, jpeg: Blob) => void} handlers.onPreview
   * @param {(state: "open" | "lost" | "failed") => void} handlers.onConnection
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.connection = null;
    this.sessionId = null;
    this.token = null;
    this.finished = false; // after `done` a closed socket is not worth re-opening
    this.retries = 0;
    this.retryTimer = null;
  }

  /** Open a fresh connection and ask for a new session. */
  start(startMessage) {
    this.sessionId = this.token = null;
    return this.connect({ ...startMessage, type: "start" });
  }

  /** Open a fresh connection to a session this browser made earlier. */
  reattach(sessionId, token) {
    this.sessionId = sessionId;
    this.token = token;
    return this.connect({ type: "resume_session", session_id: sessionId, token });
  }

  send(message) {
    return this.connection !== null && this.connection.send(message);
  }

  /** Close the connection for good (a new session replaces this one). */
  close() {
    clearTimeout(this.retryTimer);
    if (this.connection) this.connection.close();
    this.connection = null;
  }

  async connect(firstMessage) {
    this.close();
    this.finished = false;
    const connection = new Connection({
      onMessage: (message) => this.receive(message),
      onFrame: this.handlers.onFrame,
      onPreview: this.handlers.onPreview,
      onClose: (clean) => {
        if (!clean && connection === this.connection) this.lost();
      },
    });
    this.connection = connection;
    try {
      await connection.open();
    } catch {
      if (connection === this.connection) this.lost();
      return;
    }
    if (connection !== this.connection) return;
    connection.send(firstMessage);
    this.handlers.onConnection("open");
  }

  receive(message) {
    this.retries = 0; // the server answers: later drops get the full set of retries again
    if (message.type === "session") {
      this.sessionId = message.session_id;
      this.token = message.token;
    } else if (message.type === "done") {
      this.finished = true;
    }
    this.handlers.onMessage(message);
  }

  lost() {
    this.connection = null;
    if (this.finished) return; // everything was delivered; nothing to re-attach to
    if (!this.sessionId || this.retries >= RETRY_DELAYS_MS.length) {
      this.handlers.onConnection("failed");
      return;
    }
    this.handlers.onConnection("lost");
    const delay = RETRY_DELAYS_MS[this.retries++];
    this.retryTimer = setTimeout(() => this.reattach(this.sessionId, this.token), delay);
  }
}
