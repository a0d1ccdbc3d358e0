// The timeline: one card per section in playback order (thumbnail, prompt used, where
// it sits in the video), plus a card for the section being made with its progress bar
// and its newest step preview (marked as one; the section's card replaces it).
// A section can arrive in more than one piece (the decoder holds back the frames it
// still blends with the next section and sends them later under the same index), so a
// card spans every piece that carries its index. snapshot()/restore() carry the cards
// over a page reload.

import { formatTime } from "./messages.js";

export class Timeline {
  constructor(list, emptyHint) {
    this.list = list;
    this.emptyHint = emptyHint;
    this.cards = new Map(); // section index -> {element, prompt, start, end, fps, thumbnail}
    this.pending = null; // {section, element} for the card with the progress bar
  }

  clear() {
    this.removePending();
    this.cards.clear();
    this.list.replaceChildren();
    this.emptyHint.hidden = false;
  }

  /** A `section` message: create or extend that section's card. */
  addSection({ section, prompt, frames, fps, first_frame: firstFrame }) {
    this.update(section, { prompt, fps, start: firstFrame, end: firstFrame + frames });
    if (this.pending && this.pending.section <= section) this.removePending();
  }

  /** Whether the section's card still waits for a thumbnail. */
  needsThumbnail(section) {
    const card = this.cards.get(section);
    return Boolean(card) && !card.thumbnail;
  }

  /** @param {string} src  a data URL (see thumbnail.js) */
  setThumbnail(section, src) {
    const card = this.cards.get(section);
    if (!card) return;
    card.thumbnail = src;
    card.element.querySelector(".thumb").src = src;
  }

  /** Plain data for storage.js. */
  snapshot() {
    return [...this.cards].map(([section, { prompt, start, end, fps, thumbnail }]) => (
      { section, prompt, start, end, fps, thumbnail }
    ));
  }

  restore(entries) {
    for (const { section, prompt, start, end, fps, thumbnail } of entries) {
      this.update(section, { prompt, start, end, fps });
      if (thumbnail) this.setThumbnail(section, thumbnail);
    }
  }

  update(section, { prompt, fps, start, end }) {
    let card = this.cards.get(section);
    if (!card) {
      card = { element: sectionCard(section), start, end, fps, thumbnail: null };
      this.cards.set(section, card);
      this.insertInOrder(card.element, section);
    }
    Object.assign(card, { prompt, fps, start: Math.min(card.start, start), end: Math.max(card.end, end) });
    card.element.querySelector(".entry-prompt").textContent = prompt;
    card.element.querySelector(".entry-time").textContent =
      `${formatTime(card.start / fps)} – ${formatTime(card.end / fps)}`;
    this.emptyHint.hidden = true;
    this.scrollToEnd();
  }

  /** A `progress` message: move the bar on the card of the section being made. */
  progress({ section, step, steps }) {
    if (this.cards.has(section)) return; // a late message for a finished section
    if (!this.pending || this.pending.section !== section) {
      this.removePending();
      this.pending = { section, element: pendingCard(section) };
      this.insertInOrder(this.pending.element, section);
      this.emptyHint.hidden = true;
      this.scrollToEnd();
    }
    const bar = this.pending.element.querySelector("progress");
    bar.max = steps;
    bar.value = step;
    this.pending.element.querySelector(".entry-step").textContent = `step ${step} of ${steps}`;
  }

  /** A step preview (a `preview` message and its JPEG) on the card of the section being made. */
  preview(message, jpeg) {
    this.progress(message);
    if (!this.pending || this.pending.section !== message.section) return;
    const thumb = this.pending.element.querySelector(".thumb");
    const image = thumb.querySelector("img");
    if (image.src) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(jpeg);
    image.hidden = false;
    image.dataset.step = message.step;
    thumb.classList.add("has-preview");
    thumb.querySelector(".preview-badge").hidden = false;
  }

  /** Generation ended or paused: no section is in the making any more. */
  removePending() {
    if (this.pending) {
      const image = this.pending.element.querySelector(".thumb img");
      if (image.src) URL.revokeObjectURL(image.src);
      this.pending.element.remove();
    }
    this.pending = null;
  }

  insertInOrder(element, section) {
    element.dataset.section = section;
    const after = [...this.list.children].find((child) => Number(child.dataset.section) > section);
    this.list.insertBefore(element, after || null);
  }

  scrollToEnd() {
    this.list.scrollLeft = this.list.scrollWidth;
  }
}

function sectionCard(section) {
  const item = document.createElement("li");
  item.className = "entry";
  item.innerHTML = `
    <img class="thumb" alt="First frame of section ${section + 1}">
    <div class="entry-body">
      <p class="entry-meta"><span>Section ${section + 1}</span><span class="entry-time"></span></p>
      <p class="entry-prompt"></p>
    </div>`;
  return item;
}

function pendingCard(section) {
  const item = document.createElement("li");
  item.className = "entry pending";
  item.innerHTML = `
    <div class="thumb">
      <img alt="Preview of section ${section + 1}" hidden>
      <span class="preview-badge" hidden>preview</span>
    </div>
    <div class="entry-body">
      <p class="entry-meta"><span>Section ${section + 1}</span><span class="entry-step"></span></p>
      <progress aria-label="Progress of section ${section + 1}"></progress>
      <p class="entry-prompt">In the making…</p>
    </div>`;
  return item;
}
