// The conversation list: GET /api/conversations?uid=…&cursor=…, newest first, a page at a time.

import { describe, getData } from "./api.js";

const PAGE_SIZE = 30;

/** The sidebar's list; `onOpen(id)` is called when a person picks a conversation. */
export class Sidebar {
  constructor({ list, note, more, onOpen }) {
    this.list = list;
    this.note = note;
    this.more = more;
    this.onOpen = onOpen;
    this.uid = null;
    this.cursor = null;
    this.current = null;
    this.more.addEventListener("click", () => this.load(true));
  }

  /** Reload the first page for `uid` (null when the uid is not valid yet). */
  async reload(uid) {
    this.uid = uid;
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
    const uid = this.uid;
    if (uid === null) {
      this.show([], false, "Set your uid to see your conversations.");
      return;
    }
    const cursor = append && this.cursor ? `&cursor=${encodeURIComponent(this.cursor)}` : "";
    let page;
    try {
      page = await getData(`/api/conversations?uid=${uid}&limit=${PAGE_SIZE}${cursor}`);
    } catch (error) {
      if (uid === this.uid) this.show([], append, `Could not load conversations: ${describe(error)}`);
      return;
    }
    if (uid !== this.uid) return; // the uid changed while this page was loading
    this.cursor = page.next_cursor ?? null;
    this.show(page.items, append, page.items.length || append ? "" : "No conversations yet.");
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
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = conversation.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = conversation.title || "(untitled)";
    const time = document.createElement("time");
    time.dateTime = conversation.updated_at;
    time.textContent = new Date(conversation.updated_at).toLocaleString();
    button.append(title, time);
    button.addEventListener("click", () => this.onOpen(conversation.id));
    const li = document.createElement("li");
    li.append(button);
    return li;
  }
}
