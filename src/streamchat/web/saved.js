// The answer being streamed, kept in localStorage so that a reload can pick it up: the stream,
// the index of the last event shown and the text so far, written together so they always
// agree. Resuming after that index then neither repeats nor skips a token.

const KEY = "streamchat.active";

/** Save the progress of `answer` (an answer still streaming) for user `uid`. */
export function saveAnswer(answer, uid) {
  if (answer.done || !answer.streamId) return;
  const record = {
    uid,
    streamId: answer.streamId,
    conversationId: answer.conversationId,
    messageId: answer.messageId,
    question: answer.question ?? "",
    index: answer.index,
    text: answer.text,
  };
  localStorage.setItem(KEY, JSON.stringify(record));
}

/** Drop the saved progress if it is this finished answer's. */
export function forgetAnswer(answer) {
  if (answer.done && loadSaved()?.streamId === answer.streamId) dropSaved();
}

/** The saved progress, or null. */
export function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

/** Forget any saved progress. */
export function dropSaved() {
  localStorage.removeItem(KEY);
}
