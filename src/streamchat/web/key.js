// The API key of this tab (DESIGN.md §7: with STREAMCHAT_AUTH=keys every API call needs one).
//
// The page learns that keys are on from a 401, and then asks for one in a single password
// field. The key is kept in sessionStorage: it lasts as long as the tab, survives a reload, and
// is never written where another tab or a later visit would find it. The uid the key stands
// for is kept beside it once the server has said it (a `start` event, a conversation).

import { useKey } from "./api.js";
import { say } from "./words.js";

const KEY = "streamchat.key";
const KEY_UID = "streamchat.key-uid";

export class KeyPanel {
  /** `onKey()` is called when a person has given a key. */
  constructor({ form, label, input, note, button, onKey }) {
    this.form = form;
    this.input = input;
    this.note = note;
    this.onKey = onKey;
    label.textContent = say("API key", "API 密钥");
    button.textContent = say("use key", "使用密钥");
    useKey(this.key);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      sessionStorage.removeItem(KEY_UID);
      useKey(key);
      input.value = "";
      this.form.hidden = true;
      this.onKey();
    });
  }

  /** The key in use, or null. */
  get key() {
    return sessionStorage.getItem(KEY);
  }

  /** The uid of the key in use, once the server has said it; else null. */
  get uid() {
    const uid = Number(sessionStorage.getItem(KEY_UID));
    return Number.isInteger(uid) && uid >= 1 ? uid : null;
  }

  set uid(uid) {
    if (this.key !== null && Number.isInteger(uid)) sessionStorage.setItem(KEY_UID, String(uid));
  }

  get asking() {
    return !this.form.hidden;
  }

  /** The server answered 401 to a request sent with `keyUsed` (or none): ask for a key. */
  refused(error, keyUsed) {
    const key = this.key;
    if (key !== null && keyUsed !== key) return; // an older key's answer: a newer one is in use
    if (key !== null) {
      this.forget();
      this.ask(say(`This key was refused: ${error.message}`, `此密钥被拒绝: ${error.message}`));
    } else if (!this.asking) {
      this.ask(say("This server needs an API key: enter yours to chat.",
        "此服务器需要 API 密钥: 请输入您的密钥后开始聊天。"));
    }
  }

  /** Show the key field with `message` above it. */
  ask(message) {
    this.note.textContent = message;
    this.form.hidden = false;
    this.input.focus();
  }

  /** Stop using the key (the page asks again when the server refuses a request). */
  forget() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(KEY_UID);
    useKey(null);
  }
}
