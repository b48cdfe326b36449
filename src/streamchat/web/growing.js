// The Markdown of a text that only grows at its end (an answer streaming in), kept on screen.
//
// Rendering the whole text again on every frame costs time in its length (about a second a
// frame at 16,000 lines). Instead, the blocks that later text can no longer change are
// rendered once and kept; only the rest, from the first block still open, is rendered again.
// A block is settled once every line the renderer read for it (up to the line after its end,
// see renderBlock) ends in a line break: text is only ever added after those lines.
//
// The nodes are those renderMarkdown(text) builds, the settled ones grouped PART_BLOCKS at a
// time in a <div class="part"> that the browser skips while it is off screen (style.css).
// Without parts, every frame would lay out and paint all the blocks of the answer again:
// 10 to 25 ms a frame at 16,000 lines on a small machine.

import { markdownLines, renderBlock } from "./markdown.js";

const PART_BLOCKS = 64;

/** Markdown rendered into `container`, updated as its text grows. */
export class GrowingMarkdown {
  constructor(container) {
    this.container = container;
    this.rest = ""; // the text after the settled blocks
    this.open = []; // the nodes rendered from the rest, replaced by each update
    this.part = null; // the part that settled blocks go to
  }

  /** Show `more` text at the end of the text shown. */
  append(more) {
    for (const node of this.open) node.remove();
    const rest = this.rest + more;
    const lines = markdownLines(rest);
    const whole = lines.length - 1; // lines before this index end in a line break
    const fragment = document.createDocumentFragment();
    let settledLines = 0;
    let i = 0;
    while (i < lines.length) {
      i = renderBlock(lines, i, fragment);
      // `i` only grows: once a block is still open, so are all the blocks after it.
      if (i + 1 < whole) {
        this.keep(fragment);
        settledLines = i;
      }
    }
    this.rest = rest.slice(lineOffset(rest, settledLines));
    this.open = [...fragment.childNodes];
    this.container.append(fragment);
  }

  /** Move a settled block (if `fragment` holds one: not for a blank line) into the last part. */
  keep(fragment) {
    if (!fragment.firstChild) return;
    if (!this.part || this.part.childElementCount >= PART_BLOCKS) {
      this.part = document.createElement("div");
      this.part.className = "part";
      this.container.append(this.part);
    }
    this.part.append(fragment);
  }
}

/** Where line `n` of `text` starts, counting line breaks as markdownLines does. */
function lineOffset(text, n) {
  const breaks = /\r\n?|\n/g;
  for (let k = 0; k < n; k += 1) breaks.exec(text);
  return breaks.lastIndex;
}
