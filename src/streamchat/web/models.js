// The model picker (DESIGN.md §10): the models this page's key may use, from GET /v1/models.
//
// The choice is kept in sessionStorage, for the tab, like the key. With one model the picker
// stays hidden (there is nothing to choose); a choice the server no longer lists falls back to
// its default, the first of the list.

import { listModels } from "./api.js";
import { say } from "./words.js";

const KEY_MODEL = "streamchat.model";

export class ModelPicker {
  constructor({ box, label, select }) {
    this.box = box;
    this.select = select;
    label.textContent = say("model", "模型");
    select.addEventListener("change", () => sessionStorage.setItem(KEY_MODEL, select.value));
  }

  /** The model chosen; null with nothing to choose (one model, or no list yet): the server
   *  then picks its default, as for a page that knows nothing of models. */
  get value() {
    return this.box.hidden ? null : this.select.value || null;
  }

  /** Fill the list from the server; a refusal (no key yet) leaves it empty and hidden. */
  async reload() {
    let ids;
    try {
      ids = await listModels();
    } catch {
      ids = [];
    }
    const chosen = sessionStorage.getItem(KEY_MODEL);
    this.select.replaceChildren(
      ...ids.map((id) => {
        const option = document.createElement("option");
        option.value = id;
        option.textContent = id;
        return option;
      }),
    );
    if (chosen !== null && ids.includes(chosen)) this.select.value = chosen;
    this.box.hidden = ids.length < 2;
  }
}
