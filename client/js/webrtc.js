// WebRTC receive-only negotiation with the ingress: one offer, one answer, no trickle
// ICE (aiortc answers only once it has all its candidates, so the offer carries ours
// too). The STUN/TURN servers are the server's (GET /config): none are needed when page
// and server share a network, a TURN server when a NAT or firewall is between them.

const ICE_GATHERING_TIMEOUT_MS = 3000;

/**
 * Offer to receive the session's video track.
 * @param {Array<RTCIceServer>} iceServers  from the server's config
 * @returns {Promise<{pc: RTCPeerConnection, stream: MediaStream}>} once the track is there
 */
export async function receiveVideo(sessionId, token, iceServers) {
  const pc = new RTCPeerConnection({ iceServers });
  try {
    pc.addTransceiver("video", { direction: "recvonly" });
    let stream = null;
    pc.addEventListener("track", (event) => {
      stream = event.streams[0] || new MediaStream([event.track]);
    }, { once: true });

    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);

    const response = await fetch("/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        session_id: sessionId,
        token,
        sdp: pc.localDescription.sdp,
        type: pc.localDescription.type,
      }),
    });
    if (!response.ok) throw new Error(`the server refused the offer (HTTP ${response.status})`);
    const answer = await response.json();
    // The track event fires while the answer is applied, before this await returns.
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    if (!stream) throw new Error("the answer carries no video track");
    return { pc, stream };
  } catch (error) {
    pc.close();
    throw error;
  }
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    // Host candidates come within milliseconds; the timeout only guards against a
    // stuck gatherer, and whatever was gathered by then is still in the offer.
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}
