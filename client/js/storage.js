// What survives a reload, in localStorage: the session id and token (the only key to
// the session, needed by `resume_session`), the timeline shown so far, and the API key
// when the server asks for one. The server re-sends only the sections no page has
// received yet, so a reloaded page rebuilds the earlier part of its timeline from here.

const SESSION_KEY = "framepack-live.session";
const TIMELINE_KEY = "framepack-live.timeline";
const API_KEY = "framepack-live.api-key";

export function saveSession(sessionId, token) {
  localStorage.setItem(SESSION_KEY, JSON.stringify({ sessionId, token }));
}

export function loadSession() {
  const saved = read(SESSION_KEY);
  return saved && saved.sessionId && saved.token ? saved : null;
}

export function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(TIMELINE_KEY);
}

/** @param {object} entries  Timeline.snapshot() */
export function saveTimeline(sessionId, entries) {
  try {
    localStorage.setItem(TIMELINE_KEY, JSON.stringify({ sessionId, entries }));
  } catch {
    // Storage full (a very long video): keep the entries, drop the thumbnails.
    const bare = { ...entries, cards: entries.cards.map((card) => ({ ...card, thumbnail: null })) };
    try {
      localStorage.setItem(TIMELINE_KEY, JSON.stringify({ sessionId, entries: bare }));
    } catch {
      localStorage.removeItem(TIMELINE_KEY); // a stale timeline is worse than none
    }
  }
}

export function loadTimeline(sessionId) {
  const saved = read(TIMELINE_KEY);
  return saved && saved.sessionId === sessionId && saved.entries ? saved.entries : null;
}

export function saveApiKey(key) {
  localStorage.setItem(API_KEY, key);
}

export function loadApiKey() {
  return localStorage.getItem(API_KEY) || "";
}

export function forgetApiKey() {
  localStorage.removeItem(API_KEY);
}

function read(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null; // unreadable entry: behave as if none was saved
  }
}
