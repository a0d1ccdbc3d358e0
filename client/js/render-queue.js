// The render queue panel: videos the server makes without anybody watching them live
// (POST /jobs), listed with their progress until they are done, then downloadable.
//
// A job's token is its only key (GET /jobs/{id}, DELETE /jobs/{id}), so this browser keeps
// the jobs it queued, with their tokens, in localStorage; the server lists no one's jobs
// to anyone. The list is polled while a job is unfinished.

const JOBS_KEY = "framepack-live.jobs";
const POLL_MS = 1500;

export class RenderQueue {
  /**
   * @param {object} parts  list (<ul>), empty (hint shown while there is no job),
   *   onError(code, message)
   */
  constructor({ list, empty, onError }) {
    this.list = list;
    this.empty = empty;
    this.onError = onError;
    /** @type {Map<string, {id: string, token: string, status: object}>} */
    this.jobs = new Map(load().map((job) => [job.id, job]));
    this.timer = null;
  }

  /** Show the jobs this browser kept, as the server has them now. */
  async start() {
    this.render();
    await this.refresh();
  }

  /** Queue a render of `request` (a `start`'s fields and `sections`); false when refused. */
  async add(request) {
    const response = await fetch("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const answer = await response.json();
    if (!response.ok) {
      this.onError(answer.code, answer.message);
      return false;
    }
    const { token, ...status } = answer;
    this.jobs.set(status.id, { id: status.id, token, status });
    this.save();
    this.render();
    this.schedule();
    return true;
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    await Promise.all([...this.jobs.values()].filter((job) => unfinished(job.status)).map((job) => this.update(job)));
    this.save();
    this.render();
    this.schedule();
  }

  schedule() {
    if (this.timer === null && [...this.jobs.values()].some((job) => unfinished(job.status))) {
      this.timer = setTimeout(() => this.refresh(), POLL_MS);
    }
  }

  /** The job's status from the server; a job the server no longer has is forgotten. */
  async update(job) {
    const response = await this.call("GET", job);
    const answer = await response.json();
    if (response.ok) job.status = answer;
    else if (answer.code === "not_found" || answer.code === "unauthorized") this.jobs.delete(job.id);
    return response.ok ? answer : null;
  }

  /** Cancel an unfinished job; remove a finished one (its MP4 too) from the server and the list. */
  async cancel(job) {
    const response = await this.call("DELETE", job);
    const answer = await response.json();
    if (!response.ok && answer.code !== "not_found") {
      this.onError(answer.code, answer.message);
      return;
    }
    if (!response.ok || answer.state === "deleted") this.jobs.delete(job.id);
    else job.status = answer;
    this.save();
    this.render();
    this.schedule();
  }

  /** Download a done job's MP4 through a fresh signed link (they last a minute). */
  async download(job) {
    const status = await this.update(job);
    if (!status || !status.download) {
      this.onError("download_failed");
      return;
    }
    const link = document.createElement("a");
    link.href = status.download.url;
    link.download = `framepack-live-job-${job.id}.mp4`;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
  }

  call(method, job) {
    return fetch(`/jobs/${encodeURIComponent(job.id)}`, {
      method,
      headers: { Authorization: `Bearer ${job.token}` },
      cache: "no-store",
    });
  }

  render() {
    this.list.replaceChildren(...[...this.jobs.values()].reverse().map((job) => this.item(job)));
    this.empty.hidden = this.jobs.size > 0;
  }

  item(job) {
    const { status } = job;
    const li = document.createElement("li");
    li.className = "job";
    li.dataset.state = status.state;
    const prompt = document.createElement("span");
    prompt.className = "job-prompt";
    prompt.textContent = status.prompt;
    const text = document.createElement("span");
    text.className = "job-state";
    text.textContent = describe(status);
    const actions = document.createElement("span");
    actions.className = "job-actions";
    if (status.state === "done") actions.append(button("Download", () => this.download(job)));
    actions.append(button(unfinished(status) ? "Cancel" : "Remove", () => this.cancel(job)));
    li.append(prompt, text, actions);
    return li;
  }

  save() {
    localStorage.setItem(JOBS_KEY, JSON.stringify([...this.jobs.values()]));
  }
}

function unfinished(status) {
  return status.state === "queued" || status.state === "running";
}

function describe(status) {
  const made = `${status.sections_done} of ${status.sections} sections`;
  if (status.state === "running") {
    const step = status.step ? ` · step ${status.step[0]} of ${status.step[1]}` : "";
    return status.cancelling ? `Cancelling after this section (${made})` : `Rendering: ${made}${step}`;
  }
  if (status.state === "failed") return `Failed: ${status.error ? status.error.message : "unknown error"}`;
  if (status.state === "cancelled") return `Cancelled (${made})`;
  return status.state === "done" ? `Done: ${status.sections} sections` : "Queued";
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

function load() {
  try {
    const jobs = JSON.parse(localStorage.getItem(JOBS_KEY));
    return Array.isArray(jobs) ? jobs.filter((job) => job && job.id && job.token && job.status) : [];
  } catch {
    return []; // unreadable entry: as if none was kept
  }
}
