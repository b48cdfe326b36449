// One assistant answer on the page: its bubble, its text, and the stream it follows.
//
// The answer keeps the index of the last event it applied. Events at or below it are ignored,
// so a resume (after=index) can never duplicate text, and the saved {stream id, index, text}
// is always consistent: reload the page, restore the text, resume after that index.

import { StreamBroken, describe, readEvents, resumeStream } from "./api.js";
import { GrowingMarkdown } from "./growing.js";
import { renderMarkdown } from "./markdown.js";

const RESUME_TRIES = 3;
// The most new text one frame renders. A burst (a resume replaying a long answer, a page that
// was busy or restored a long saved text) is shown over several short frames, not in one long
// one; 60 frames a second still show 60 kB a second, far more than any model writes.
const FRAME_CHARS = 1000;

const NOTES = {
  cancelled: "Stopped.",
  interrupted: "Interrupted: the answer was not finished.",
  length: "Cut off: the answer reached its length limit.",
};

/** A message bubble: <article class="msg ROLE" data-status=…> with a body and a status line;
 *  an answer also names the model that wrote it (once known). */
export function messageElement(role, text, status = "complete", model = null) {
  const article = document.createElement("article");
  article.className = `msg ${role}`;
  const body = document.createElement("div");
  body.className = "body";
  const note = document.createElement("p");
  note.className = "status";
  article.append(body, note);
  if (role === "assistant") {
    const label = document.createElement("p");
    label.className = "model";
    article.prepend(label);
    showModel(article, model);
  }
  if (role === "assistant") {
    body.replaceChildren(renderMarkdown(text));
  } else {
    body.textContent = text;
  }
  setStatus(article, status, NOTES[status] ?? "");
  return article;
}

/** Name the model that wrote an answer's bubble. */
export function showModel(article, model) {
  if (!model) return;
  article.dataset.model = model;
  article.querySelector(".model").textContent = model;
}

function setStatus(article, status, note) {
  article.dataset.status = status;
  article.setAttribute("aria-busy", String(status === "streaming"));
  article.querySelector(".status").textContent = note;
}

/** An answer being streamed into its bubble. */
export class Answer {
  constructor({ text = "", index = -1, streamId = null, conversationId = null } = {}) {
    this.element = messageElement("assistant", "", "streaming");
    this.markdown = new GrowingMarkdown(this.element.querySelector(".body"));
    this.text = text;
    this.unshown = text; // the end of the text, not on screen yet
    this.index = index;
    this.streamId = streamId;
    this.conversationId = conversationId;
    this.messageId = null;
    this.uid = null; // the uid the server answers for, from the start event
    this.done = false;
    this.status = "streaming";
    this.note = "";
    this.onChange = () => {}; // called after each repaint: the page saves progress there
    this.onStart = () => {};
    this._frame = 0;
    this._caret = null;
    this.schedule();
  }

  /** Follow the stream to its end: `first` is an open response, or null to resume at once. */
  async follow(first) {
    let response = first;
    for (let attempt = 0; ; attempt += 1) {
      try {
        response ??= await resumeStream(this.streamId, this.index);
        for await (const event of readEvents(response)) {
          this.apply(event);
          attempt = 0;
        }
        return;
      } catch (error) {
        const retry = error instanceof StreamBroken || error instanceof TypeError;
        if (!retry || !this.streamId || attempt >= RESUME_TRIES) {
          this.fail(describe(error));
          throw error;
        }
        response = null;
        await new Promise((resolve) => setTimeout(resolve, 400 * (attempt + 1)));
      }
    }
  }

  /** Apply one event of the stream. */
  apply(event) {
    if (event.index <= this.index) return; // already shown (a replay after resume)
    this.index = event.index;
    if (event.type === "start") {
      this.streamId = event.stream_id;
      this.conversationId = event.conversation_id;
      this.messageId = event.message_id;
      this.uid = event.uid ?? null;
      showModel(this.element, event.model);
      this.onStart(this);
    } else if (event.type === "delta") {
      this.text += event.delta;
      this.unshown += event.delta;
    } else if (event.type === "end") {
      const status = event.finish_reason === "stop" ? "complete" : event.finish_reason;
      this.finish(status, NOTES[status] ?? "");
    } else if (event.type === "error") {
      this.finish("error", `Error: ${event.message} (${event.code})`);
    }
    this.schedule();
  }

  /** End the answer with an error the page met (not one the stream reported). */
  fail(message) {
    if (!this.done) this.finish("error", `Error: ${message}`);
  }

  finish(status, note) {
    this.done = true;
    this.status = status;
    this.note = note;
    this.repaint();
  }

  schedule() {
    if (this.done && !this.unshown) return; // all shown, the status too
    this._frame ||= requestAnimationFrame(() => this.repaint());
  }

  /** Show more of the text (all of it, unless it is more than a frame's worth). */
  repaint() {
    cancelAnimationFrame(this._frame);
    this._frame = 0;
    this._caret?.remove();
    // Only the new text is handed on: the whole text is one long string, and reading it on
    // every frame would copy all of it.
    this.markdown.append(this.unshown.slice(0, FRAME_CHARS));
    this.unshown = this.unshown.slice(FRAME_CHARS);
    const behind = this.unshown !== "";
    if (behind) this.schedule();
    // The bubble says the answer ended once all its text shows.
    if (this.done && !behind) setStatus(this.element, this.status, this.note);
    else this._caret = caretAtEnd(this.markdown.container);
    this.onChange(this);
  }
}

/** Put the typing caret right after the last character shown, however deeply nested; return it. */
function caretAtEnd(body) {
  let node = body;
  while (node.lastChild?.nodeType === Node.ELEMENT_NODE && node.lastChild.tagName !== "BR") {
    node = node.lastChild;
  }
  const caret = document.createElement("span");
  caret.className = "caret";
  caret.setAttribute("aria-hidden", "true");
  node.append(caret);
  return caret;
}
