// The conversation list: GET /api/conversations?uid=…&cursor=…, newest first, a page at a time,
// each with a delete button that asks to confirm first.

import { describe, getData, withQuery } from "./api.js";
import { say } from "./words.js";

const PAGE_SIZE = 30;

/** The sidebar's list. `onOpen(id)` is called when a person picks a conversation,
 *  `onDelete(id)` (a promise) once they confirmed deleting one, and `onUid(uid)` with the
 *  owner's uid when a page of conversations shows it. */
export class Sidebar {
  constructor({ list, note, more, onOpen, onDelete, onUid }) {
    this.list = list;
    this.note = note;
    this.more = more;
    this.onOpen = onOpen;
    this.onDelete = onDelete;
    this.onUid = onUid;
    this.owner = null;
    this.loads = 0;
    this.cursor = null;
    this.current = null;
    this.more.addEventListener("click", () => this.load(true));
  }

  /** Reload the first page for `owner`: the query that names the user ({uid} with keys off,
   *  {} when the key says who it is), or null when the uid is not valid yet. */
  async reload(owner) {
    this.owner = owner;
    this.cursor = null;
    await this.load(false);
  }

  /** Mark the conversation shown in the chat. */
  select(id) {
    this.current = id;
    for (const button of this.list.querySelectorAll("button[data-id]")) {
      button.toggleAttribute("aria-current", button.dataset.id === id);
    }
  }

  async load(append) {
    const owner = this.owner;
    const load = (this.loads += 1);
    if (owner === null) {
      this.show([], false, "Set your uid to see your conversations.");
      return;
    }
    const cursor = append && this.cursor ? this.cursor : undefined;
    const url = withQuery("/api/conversations", { ...owner, limit: PAGE_SIZE, cursor });
    let page;
    try {
      page = await getData(url);
    } catch (error) {
      if (load === this.loads) this.show([], append, loadFailed(error));
      return;
    }
    if (load !== this.loads) return; // the uid or key changed while this page was loading
    this.cursor = page.next_cursor ?? null;
    this.show(page.items, append, page.items.length || append ? "" : "No conversations yet.");
    if (page.items.length) this.onUid(page.items[0].uid);
  }

  show(items, append, note) {
    if (!append) this.list.replaceChildren();
    for (const conversation of items) this.list.append(this.item(conversation));
    this.note.textContent = note;
    this.note.hidden = !note;
    this.more.hidden = !this.cursor;
    this.select(this.current);
  }

  item(conversation) {
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.dataset.id = conversation.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = conversation.title || "(untitled)";
    const time = document.createElement("time");
    time.dateTime = conversation.updated_at;
    time.textContent = new Date(conversation.updated_at).toLocaleString();
    open.append(title, time);
    open.addEventListener("click", () => this.onOpen(conversation.id));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "×";
    remove.title = say("Delete this conversation", "删除此会话");
    remove.setAttribute("aria-label", `${remove.title}: ${title.textContent}`);
    const li = document.createElement("li");
    remove.addEventListener("click", () => this.confirm(li, conversation.id));
    li.append(open, remove);
    return li;
  }

  /** Ask, under the conversation, whether to delete it. */
  confirm(li, id) {
    if (li.querySelector(".confirm")) return;
    const box = document.createElement("div");
    box.className = "confirm";
    box.setAttribute("role", "alertdialog");
    const question = document.createElement("span");
    question.textContent = say("Delete this conversation?", "删除此会话?");
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "confirm-delete";
    yes.textContent = say("Delete", "删除");
    const no = document.createElement("button");
    no.type = "button";
    no.className = "cancel-delete";
    no.textContent = say("Cancel", "取消");
    no.addEventListener("click", () => box.remove());
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        await this.onDelete(id);
      } finally {
        box.remove();
      }
    });
    box.append(question, yes, no);
    li.append(box);
    no.focus();
  }
}

function loadFailed(error) {
  if (error.status === 401) {
    return say("Use your key to see your conversations.", "使用密钥后即可查看您的会话。");
  }
  return `Could not load conversations: ${describe(error)}`;
}
