// The timeline: one card per section in playback order (thumbnail, prompt used, where
// it sits in the video), plus a card for the section being made with its progress bar
// and its newest step preview (marked as one; the section's card replaces it).
// A section can arrive in more than one piece (the decoder holds back the frames it
// still blends with the next section and sends them later under the same index), so a
// card spans every piece that carries its index. snapshot()/restore() carry the cards
// over a page reload.
//
// Branches: a rewind makes a new branch whose path is its parent's sections before the
// fork, then its own. Every branch's cards are kept; the list shows one branch's path
// at a time (the branch bar picks which; the live one, being made, is marked), and each
// card offers "Rewind here": go back to the start of that section and make it again.

import { formatTime } from "./messages.js";

export class Timeline {
  /**
   * @param {object} options
   * @param {(request: {branch: number, section: number, prompt: string}) => void} options.onRewind
   * @param {(branch: number) => void} [options.onShow]  the branch on display changed
   */
  constructor(list, emptyHint, branchBar, { onRewind, onShow = () => {} }) {
    this.list = list;
    this.emptyHint = emptyHint;
    this.branchBar = branchBar;
    this.onRewind = onRewind;
    this.onShow = onShow;
    this.rewindable = false;
    this.clear();
  }

  clear() {
    this.removePending();
    this.cards = new Map(); // "branch:section" -> {element, branch, section, prompt, start, end, fps, thumbnail}
    this.branches = new Map([[0, { parent: null, fork: 0, prompt: "" }]]);
    this.live = 0; // the branch being made
    this.shown = 0; // the branch on display
    this.list.replaceChildren();
    this.emptyHint.hidden = false;
    this.renderBranchBar();
  }

  /** A `branch` message: a rewind made it, and it is the one being made from now on. */
  addBranch({ branch, parent, section, prompt }) {
    this.branches.set(branch, { parent, fork: section, prompt });
    this.live = branch;
    this.removePending();
    this.show(branch);
  }

  /** A `section` message: create or extend that section's card. */
  addSection({ section, prompt, frames, fps, first_frame: firstFrame, branch = 0 }) {
    this.update(branch, section, { prompt, fps, start: firstFrame, end: firstFrame + frames });
    if (branch === this.live && this.pending && this.pending.section <= section) this.removePending();
  }

  /** Sections and frames of a branch's path (default: the live one). */
  pathLength(branch = this.live) {
    let sections = 0;
    let frames = 0;
    for (const card of this.cards.values()) {
      if (!this.onPath(card, branch)) continue;
      sections = Math.max(sections, card.section + 1);
      frames = Math.max(frames, card.end);
    }
    return { sections, frames };
  }

  /** Whether the section's card still waits for a thumbnail. */
  needsThumbnail(branch, section) {
    const card = this.cards.get(key(branch, section));
    return Boolean(card) && !card.thumbnail;
  }

  /** @param {string} src  a data URL (see thumbnail.js) */
  setThumbnail(branch, section, src) {
    const card = this.cards.get(key(branch, section));
    if (!card) return;
    card.thumbnail = src;
    card.element.querySelector(".thumb").src = src;
  }

  /** Plain data for storage.js. */
  snapshot() {
    const cards = [...this.cards.values()].map(({ branch, section, prompt, start, end, fps, thumbnail }) => (
      { branch, section, prompt, start, end, fps, thumbnail }
    ));
    const branches = [...this.branches].map(([branch, { parent, fork, prompt }]) => ({ branch, parent, fork, prompt }));
    return { cards, branches, live: this.live };
  }

  /** @param {object|Array} saved  snapshot(), or the card list older pages saved */
  restore(saved) {
    const { cards, branches = [], live = 0 } = Array.isArray(saved) ? { cards: saved } : saved;
    for (const { branch, parent, fork, prompt } of branches) this.branches.set(branch, { parent, fork, prompt });
    for (const { branch = 0, section, prompt, start, end, fps, thumbnail } of cards) {
      this.update(branch, section, { prompt, start, end, fps });
      if (thumbnail) this.setThumbnail(branch, section, thumbnail);
    }
    this.live = live;
    this.show(live);
  }

  update(branch, section, { prompt, fps, start, end }) {
    let card = this.cards.get(key(branch, section));
    if (!card) {
      card = { element: this.sectionCard(branch, section), branch, section, start, end, fps, thumbnail: null };
      this.cards.set(key(branch, section), card);
      this.insertInOrder(card.element, section);
      card.element.hidden = !this.onPath(card, this.shown);
    }
    Object.assign(card, { prompt, fps, start: Math.min(card.start, start), end: Math.max(card.end, end) });
    card.element.dataset.end = card.end; // the frame after it, on any path it is on
    card.element.querySelector(".entry-prompt").textContent = prompt;
    card.element.querySelector(".entry-time").textContent =
      `${formatTime(card.start / fps)} – ${formatTime(card.end / fps)}`;
    this.emptyHint.hidden = true;
    if (!card.element.hidden) this.scrollToEnd();
  }

  /** A `progress` message: move the bar on the card of the section being made. */
  progress({ section, step, steps }) {
    if (this.cards.has(key(this.live, section))) return; // a late message for a finished section
    if (!this.pending || this.pending.section !== section) {
      this.removePending();
      this.pending = { section, element: pendingCard(section) };
      this.insertInOrder(this.pending.element, section);
      this.pending.element.hidden = this.shown !== this.live;
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

  /** Show `branch`'s path: its ancestors' sections before it forked, then its own. */
  show(branch) {
    this.shown = branch;
    for (const card of this.cards.values()) card.element.hidden = !this.onPath(card, branch);
    if (this.pending) this.pending.element.hidden = branch !== this.live;
    this.renderBranchBar();
    this.scrollToEnd();
    this.onShow(branch);
  }

  /** Rewinding needs a session that still makes sections. */
  setRewindable(rewindable) {
    this.rewindable = rewindable;
    for (const button of this.list.querySelectorAll("button.rewind")) button.disabled = !rewindable;
  }

  /** Whether `card` is on `branch`'s path: the branch that made its section there is its own. */
  onPath(card, branch) {
    let owner = branch;
    while (owner !== null && card.section < this.branches.get(owner)?.fork) owner = this.branches.get(owner).parent;
    return owner === card.branch;
  }

  renderBranchBar() {
    const single = this.branches.size === 1;
    this.branchBar.hidden = single;
    if (single) return;
    const buttons = [...this.branches].map(([branch, { parent, fork }]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "branch";
      button.dataset.branch = branch;
      button.setAttribute("aria-pressed", String(branch === this.shown));
      button.classList.toggle("live", branch === this.live);
      const from = parent === null ? "" : ` (from ${parent + 1}, section ${fork + 1})`;
      button.textContent = `Branch ${branch + 1}${from}${branch === this.live ? " · live" : ""}`;
      button.addEventListener("click", () => this.show(branch));
      return button;
    });
    this.branchBar.replaceChildren(...buttons);
  }

  insertInOrder(element, section) {
    element.dataset.section = section;
    const after = [...this.list.children].find((child) => Number(child.dataset.section) > section);
    this.list.insertBefore(element, after || null);
  }

  scrollToEnd() {
    this.list.scrollLeft = this.list.scrollWidth;
  }

  sectionCard(branch, section) {
    const item = document.createElement("li");
    item.className = "entry";
    item.dataset.branch = branch;
    item.innerHTML = `
      <img class="thumb" alt="First frame of section ${section + 1}">
      <div class="entry-body">
        <p class="entry-meta"><span>Section ${section + 1}</span><span class="entry-time"></span></p>
        <p class="entry-prompt"></p>
        <button type="button" class="rewind" title="Make this section again, and go on from it as a new branch, with the steer box's prompt (or this section's own when the box is empty)">Rewind here</button>
      </div>`;
    const button = item.querySelector("button.rewind");
    button.disabled = !this.rewindable;
    button.addEventListener("click", () => {
      const card = this.cards.get(key(branch, section));
      this.onRewind({ branch: this.shown, section, prompt: card.prompt });
    });
    return item;
  }
}

function key(branch, section) {
  return `${branch}:${section}`;
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
