// The chat page: wiring of the composer, the answers, the sidebar, and what survives a reload.
//
// localStorage keeps the uid, the conversation on screen, and the answer being streamed
// (saved.js), so a reload shows the text and resumes the stream after the last index shown.
//
// Two modes, as the server runs (DESIGN.md §7). Keys off: the uid is typed, and sent with
// every request, as in the seed. Keys on (the page learns it from a 401): the key is asked for
// (key.js) and sent instead; the key says who the user is, so no uid is sent, and the uid the
// server answers for is shown in the top bar.

import {
  ApiError,
  deleteData,
  describe,
  getData,
  onUnauthorized,
  postData,
  startChat,
  withQuery,
} from "./api.js";
import { Answer, messageElement } from "./answer.js";
import { KeyPanel } from "./key.js";
import { ModelPicker } from "./models.js";
import { dropSaved, forgetAnswer, loadSaved, saveAnswer } from "./saved.js";
import { Sidebar } from "./sidebar.js";
import { say } from "./words.js";

const KEY_UID = "streamchat.uid";
const KEY_CONVERSATION = "streamchat.conversation";
// Saving writes the whole text so far: on every frame of a long answer it would cost
// milliseconds a frame. Once a second is enough, as the page also saves when it goes away.
const SAVE_EVERY_MS = 1000;

const $ = (id) => document.getElementById(id);
const ui = {
  uid: $("uid"),
  uidBox: $("uid-box"),
  who: $("who"),
  changeKey: $("change-key"),
  messages: $("messages"),
  empty: $("empty"),
  form: $("composer"),
  message: $("message"),
  send: $("send"),
  stop: $("stop"),
  error: $("error"),
  errorText: $("error-text"),
  errorDetail: $("error-detail"),
};

const state = { conversationId: null, answer: null, keyed: false };

const sidebar = new Sidebar({
  list: $("conversations"),
  note: $("conversations-note"),
  more: $("more-conversations"),
  onOpen: (id) => {
    setDrawer(false);
    openConversation(id).catch(showError);
  },
  onDelete: (id) => deleteConversation(id).catch(showError),
  onUid: (uid) => learnUid(uid),
});

const models = new ModelPicker({
  box: $("model-box"),
  label: $("model-label"),
  select: $("model"),
});

const keys = new KeyPanel({
  form: $("key-form"),
  label: $("key-label"),
  input: $("key"),
  note: $("key-note"),
  button: $("use-key"),
  onKey: () => {
    showKeyed();
    hideError();
    newChat();
    sidebar.reload(owner());
    models.reload(); // this key may use other models than the last
  },
});

// ---- uid ----

/** The uid as the server wants it: a number when it looks like one, else as typed. */
function uidValue() {
  const raw = ui.uid.value.trim();
  return /^\d{1,15}$/.test(raw) ? Number(raw) : raw || undefined;
}

function validUid() {
  const uid = uidValue();
  return typeof uid === "number" && uid >= 1 ? uid : null;
}

/** Who the requests are for, as query parameters: the typed uid with keys off; nothing with
 *  keys on (the key says it); null while the typed uid is not valid. */
function owner() {
  if (state.keyed) return {};
  const uid = validUid();
  return uid === null ? null : { uid };
}

/** The uid the page acts as: the typed one, or the key's once the server said it. */
function actingUid() {
  return state.keyed ? keys.uid : validUid();
}

// ---- keys ----

/** Show the top bar of keys on: the key's uid instead of the uid box. */
function showKeyed() {
  state.keyed = true;
  ui.uidBox.hidden = true;
  const uid = keys.uid;
  ui.who.textContent = uid === null ? "" : `uid ${uid}`;
  ui.who.hidden = uid === null;
  ui.changeKey.hidden = keys.key === null;
}

function learnUid(uid) {
  if (!state.keyed || uid === keys.uid) return;
  keys.uid = uid;
  showKeyed();
}

onUnauthorized((error, keyUsed) => {
  keys.refused(error, keyUsed);
  showKeyed();
});

// ---- errors ----

function showError(error) {
  if (error instanceof ApiError && error.status === 401) return; // the key field says it
  ui.errorText.textContent = describe(error);
  const detail = [];
  if (error instanceof ApiError) {
    detail.push(`HTTP ${error.status}`);
    if (error.code !== null) detail.push(`code ${error.code}`);
  }
  ui.errorDetail.textContent = detail.join(" · ");
  ui.error.hidden = false;
  scrollToEnd(); // the banner took room from the chat
}

function hideError() {
  ui.error.hidden = true;
}

// ---- the chat ----

// Follow the bottom of the chat while it grows, unless the person scrolled up to read.
let stickToBottom = true;

function scrollToEnd() {
  if (stickToBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function show(element) {
  ui.empty.hidden = true;
  ui.messages.append(element);
  scrollToEnd();
}

function clearChat() {
  state.answer = null;
  dropSaved(); // a reload now shows what is on screen instead
  ui.messages.replaceChildren(ui.empty);
  ui.empty.hidden = false;
  updateComposer();
}

function updateComposer() {
  const running = state.answer !== null && !state.answer.done;
  ui.send.disabled = running;
  ui.stop.hidden = !running;
}

function setConversation(id) {
  state.conversationId = id;
  if (id) localStorage.setItem(KEY_CONVERSATION, id);
  else localStorage.removeItem(KEY_CONVERSATION);
  sidebar.select(id);
}

/** Put an answer on screen and follow it; progress is saved while it is the one shown. */
async function run(answer, response) {
  state.answer = answer;
  updateComposer();
  show(answer.element);
  answer.onStart = () => {
    if (answer.uid !== null) learnUid(answer.uid);
    if (state.answer === answer) setConversation(answer.conversationId);
    sidebar.reload(owner());
  };
  let savedAt = -Infinity;
  answer.onChange = () => {
    if (state.answer === answer && performance.now() - savedAt >= SAVE_EVERY_MS) {
      saveAnswer(answer, actingUid());
      savedAt = performance.now();
    }
    scrollToEnd();
  };
  // An answer left on screen's behalf goes on in the background (so the generation is not
  // abandoned) and reports nothing there; its conversation shows it when reopened.
  try {
    await answer.follow(response);
    if (answer.status === "error" && state.answer === answer) showError(new Error(answer.note));
  } catch (error) {
    if (state.answer === answer) showError(error);
  } finally {
    forgetAnswer(answer);
    if (state.answer === answer) updateComposer();
    if (answer.done) sidebar.reload(owner());
  }
}

async function send(text) {
  hideError();
  const body = state.keyed ? { message: text } : { uid: uidValue(), message: text };
  if (state.conversationId) body.conversation_id = state.conversationId;
  if (models.value !== null) body.model = models.value;
  const question = messageElement("user", text);
  show(question);
  ui.message.value = "";
  const answer = new Answer({ conversationId: state.conversationId });
  answer.question = text;
  ui.send.disabled = true;
  let response;
  try {
    response = await startChat(body);
  } catch (error) {
    // Nothing was started: take the message back so it can be fixed and sent again.
    question.remove();
    ui.empty.hidden = ui.messages.children.length > 1;
    ui.message.value = text;
    updateComposer();
    showError(error);
    return;
  }
  await run(answer, response);
}

async function stop() {
  const answer = state.answer;
  if (!answer?.streamId) return;
  ui.stop.disabled = true;
  try {
    await postData(`/api/chat/streams/${encodeURIComponent(answer.streamId)}/cancel`);
  } catch (error) {
    showError(error);
  } finally {
    ui.stop.disabled = false;
  }
}

/** A stored message as a bubble, with its status ("Stopped.", the error, …). */
function storedElement(message) {
  const element = messageElement(message.role, message.content, message.status, message.model);
  if (message.error) element.querySelector(".status").textContent = `Error: ${message.error}`;
  return element;
}

/** Show a stored conversation (its messages are returned); an answer still streaming in it
 *  is followed live, replayed from its stream's first event so that it rebuilds all its text. */
async function openConversation(id, skipMessageId = null) {
  const items = await allMessages(id);
  hideError();
  clearChat();
  setConversation(id);
  for (const message of items) {
    if (message.id === skipMessageId) continue;
    if (message.role === "assistant" && message.status === "streaming" && message.stream_id) {
      run(new Answer({ streamId: message.stream_id, conversationId: id }), null);
    } else {
      show(storedElement(message));
    }
  }
  return items;
}

/** Every message of a conversation, oldest first: the server gives the latest page, then
 *  the ones before it page by page (`next_cursor`), so a long chat is read in bounded bites. */
async function allMessages(id) {
  const path = `/api/conversations/${encodeURIComponent(id)}/messages`;
  const who = owner() ?? { uid: uidValue() };
  let items = [];
  let cursor = null;
  do {
    const page = await getData(withQuery(path, { ...who, cursor }));
    items = page.items.concat(items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** Delete a conversation (its delete button was confirmed); leave it if it is on screen. */
async function deleteConversation(id) {
  await deleteData(withQuery(`/api/conversations/${encodeURIComponent(id)}`, owner() ?? {}));
  if (state.conversationId === id) newChat();
  await sidebar.reload(owner());
}

/** After a reload: restore the answer that was streaming, then resume it after its index. */
async function restore(saved) {
  let stored = null;
  try {
    const items = await openConversation(saved.conversationId, saved.messageId);
    stored = items.find((message) => message.id === saved.messageId) ?? null;
  } catch {
    // No history on this server (or it failed): show the saved question alone.
    clearChat();
    setConversation(saved.conversationId);
    show(messageElement("user", saved.question));
  }
  if (stored && stored.status !== "streaming") {
    // It ended while the page was away: the store has all of it.
    dropSaved();
    show(storedElement(stored));
    return;
  }
  const answer = new Answer({
    text: saved.text,
    index: saved.index,
    streamId: saved.streamId,
    conversationId: saved.conversationId,
  });
  answer.messageId = saved.messageId;
  answer.question = saved.question;
  await run(answer, null);
}

// ---- the page ----

function setDrawer(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
}

function newChat() {
  hideError();
  setConversation(null);
  clearChat();
  ui.message.focus();
}

function start() {
  ui.uid.value = localStorage.getItem(KEY_UID) ?? "1";
  if (keys.key !== null) showKeyed(); // this tab was given a key: keys are on
  ui.changeKey.textContent = say("change key", "更换密钥");
  ui.changeKey.addEventListener("click", () => {
    keys.forget();
    showKeyed();
    newChat();
    sidebar.reload(owner());
    keys.ask(say("Enter the key to use.", "请输入要使用的密钥。"));
  });
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(ui.message.value);
  });
  ui.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !ui.send.disabled) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.stop.addEventListener("click", stop);
  ui.messages.addEventListener("scroll", () => {
    const { scrollHeight, scrollTop, clientHeight } = ui.messages;
    stickToBottom = scrollHeight - scrollTop - clientHeight < 40;
  });
  ui.uid.addEventListener("change", () => {
    localStorage.setItem(KEY_UID, ui.uid.value.trim());
    newChat();
    sidebar.reload(owner());
  });
  $("new-chat").addEventListener("click", () => {
    setDrawer(false);
    newChat();
  });
  $("toggle-sidebar").addEventListener("click", () => {
    setDrawer(!document.body.classList.contains("sidebar-open"));
  });
  document.querySelector(".chat").addEventListener("click", () => setDrawer(false));
  $("error-close").addEventListener("click", hideError);
  window.addEventListener("pagehide", () => {
    if (state.answer) saveAnswer(state.answer, actingUid());
  });

  sidebar.reload(owner());
  models.reload();
  const saved = loadSaved();
  const conversation = localStorage.getItem(KEY_CONVERSATION);
  if (saved && saved.uid === actingUid()) {
    restore(saved).catch(showError);
  } else if (conversation) {
    openConversation(conversation).catch(() => setConversation(null));
  }
  updateComposer();
}

start();
