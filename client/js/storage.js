// The session id and token live in localStorage so that a reload (or a crashed tab)
// can re-attach with `resume_session`; the token is the only key to the session.

const KEY = "framepack-live.session";

export function saveSession(sessionId, token) {
  localStorage.setItem(KEY, JSON.stringify({ sessionId, token }));
}

export function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY));
    return saved && saved.sessionId && saved.token ? saved : null;
  } catch {
    return null; // unreadable entry: behave as if none was saved
  }
}

export function forgetSession() {
  localStorage.removeItem(KEY);
}
