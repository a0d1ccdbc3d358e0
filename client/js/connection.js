// One WebSocket to /ws. Text messages are JSON; with media "jpeg" every `section`
// message is followed by exactly `frames` binary messages (one JPEG each), and every
// `preview` message by one, so this class pairs each binary message with the message
// it belongs to.

export class Connection {
  /**
   * @param {object} handlers
   * @param {(msg: object) => void} handlers.onMessage  every JSON message
   * @param {(section: object, index: number, jpeg: Blob) => void} handlers.onFrame
   * @param {(preview: object, jpeg: Blob) => void} handlers.onPreview  a step preview
   * @param {(clean: boolean) => void} handlers.onClose  after a successful open only;
   *        clean = closed by this page
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.closing = false;
    this.expect = null; // {section, next, remaining}: JPEGs still owed by the last `section`
    this.preview = null; // a `preview` message whose JPEG is the next binary message
  }

  /** Resolves once the socket is open; rejects if it cannot connect. */
  open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.binaryType = "blob";
    this.ws = ws;
    let opened = false;
    return new Promise((resolve, reject) => {
      ws.addEventListener("open", () => {
        opened = true;
        resolve();
      });
      ws.addEventListener("close", () => {
        if (opened) this.handlers.onClose(this.closing);
        else reject(new Error("WebSocket closed before it opened"));
      });
      ws.addEventListener("message", (event) => this.receive(event.data));
    });
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.close();
  }

  receive(data) {
    if (typeof data !== "string") {
      this.receiveFrame(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to show: the protocol only sends JSON text
    }
    if (message.type === "section") {
      this.expect = { section: message, next: 0, remaining: message.frames || 0 };
    } else if (message.type === "preview") {
      this.preview = message; // shown once its JPEG is in, not announced on its own
      return;
    }
    this.handlers.onMessage(message);
  }

  receiveFrame(blob) {
    if (this.preview) {
      const preview = this.preview;
      this.preview = null;
      this.handlers.onPreview(preview, new Blob([blob], { type: "image/jpeg" }));
      return;
    }
    // A JPEG without a section before it would be a server bug; dropping it keeps the
    // pairing of later frames right.
    if (!this.expect || this.expect.remaining <= 0) return;
    const { section } = this.expect;
    const index = this.expect.next++;
    this.expect.remaining--;
    this.handlers.onFrame(section, index, new Blob([blob], { type: "image/jpeg" }));
  }
}
