// The LoRAs a session may run with: the server's list (GET /config, names and descriptions;
// the files stay on the server), each with a tick box and a strength. Hidden when the
// server offers none. A ticked LoRA goes into `start` as {name, scale}.

// The server's bounds on a LoRA's strength (stream/protocol.py: MAX_LORA_SCALE).
const MAX_SCALE = 2;

export class LoraChooser {
  constructor({ field, list }) {
    Object.assign(this, { field, list });
  }

  /** Offer the server's LoRAs: [{name, description}]. */
  offer(loras) {
    this.list.replaceChildren(...loras.map((lora, index) => this.item(lora, index)));
    this.field.hidden = loras.length === 0;
  }

  item({ name, description }, index) {
    const id = `lora-${index}`;
    const item = document.createElement("li");
    item.className = "lora";
    const label = document.createElement("label");
    label.className = "check";
    const tick = document.createElement("input");
    Object.assign(tick, { type: "checkbox", id, value: name });
    label.append(tick, name);
    const scale = document.createElement("input");
    Object.assign(scale, { type: "number", min: "0", max: String(MAX_SCALE), step: "0.1", value: "1" });
    scale.className = "lora-scale";
    scale.setAttribute("aria-label", `Strength of ${name}`);
    scale.disabled = true;
    tick.addEventListener("change", () => { scale.disabled = !tick.checked; });
    item.append(label, scale);
    if (description) {
      const hint = document.createElement("p");
      hint.className = "hint";
      hint.id = `${id}-hint`;
      hint.textContent = description;
      tick.setAttribute("aria-describedby", hint.id);
      item.append(hint);
    }
    return item;
  }

  /** The ticked LoRAs as `start` takes them, strengths clamped to the server's bounds. */
  value() {
    return [...this.list.querySelectorAll(".lora")]
      .filter((item) => item.querySelector("input[type=checkbox]").checked)
      .map((item) => {
        const scale = Number.parseFloat(item.querySelector(".lora-scale").value);
        return {
          name: item.querySelector("input[type=checkbox]").value,
          scale: Number.isFinite(scale) ? Math.min(Math.max(scale, 0), MAX_SCALE) : 1,
        };
      });
  }
}
