// The page's own messages in the person's language: Chinese when the browser prefers it, else
// English — the language the browser's Accept-Language asks of the server, so a message the
// page writes reads like the server's message beside it.

const CHINESE = /^zh\b/i.test(navigator.languages?.[0] ?? navigator.language ?? "");

/** `en`, or `zh` for a person whose browser prefers Chinese. */
export function say(en, zh) {
  return CHINESE ? zh : en;
}
