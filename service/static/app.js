// medcite search page. Plain DOM, no framework, no build step.
// Every string from the corpus or the API reaches the page through textContent or a text
// node, never through innerHTML: an article containing <script> shows as text.
// Privacy: the question never goes into the address bar, the title or a GET URL; a link
// to a search is made only when asked for ("Copy link"). Back/forward between searches
// keeps the question in the tab's own history state.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const input = $("q");
  const submit = $("submit");
  const counter = $("q-count");
  const note = $("q-note");
  const filters = $("filters");
  const langSelect = $("lang");
  const sourceSelect = $("source-filter");
  const examples = $("examples");
  const statusEl = $("status");
  const loading = $("loading");
  const loadingText = $("loading-text");
  const errorBox = $("error");
  const errorText = $("error-text");
  const retry = $("retry");
  const results = $("results");
  const urgent = $("urgent");
  const noAnswer = $("no-answer");
  const crossLang = $("crosslang");
  const disclaimerEl = $("disclaimer");
  const cards = $("cards");
  const copyLink = $("copy-link");
  const copyLinkStatus = $("copy-link-status");
  const dialog = $("source-view");
  const sourceTitle = $("source-title");
  const sourceMeta = $("source-meta");
  const sourceText = $("source-text");
  const sourceClose = $("source-close");
  const boilerplateBox = $("source-boilerplate");
  const boilerplateLabel = $("source-boilerplate-label");

  const K = 8;
  const MAX_CHARS = 1000;
  const COUNTER_FROM = 800; // the counter shows from this many characters on
  // A passage longer than CLIP characters shows a window and "More", with LEAD characters
  // of context before its evidence sentence (Chinese says more per character).
  const CLIP = { zh: 160, en: 360 };
  const LEAD = { zh: 40, en: 90 };
  const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2ebef}]/u;
  const HAN_ALL = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2ebef}]/gu;
  const LETTER_ALL = /\p{L}/gu;
  // What the API refuses (control characters other than tab / newline / CR, lone surrogates).
  const CONTROL_ALL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  const NARROW = window.matchMedia("(max-width: 36rem), (pointer: coarse)");

  const T = {
    en: {
      searching: "Searching…",
      found: (n) => `${n} cited passage${n === 1 ? "" : "s"}`,
      showing: (a, b) => `Showing ${a} of ${b} passages`,
      noAnswerStatus: "No answer in the corpus",
      noAnswer: "The corpus has no passage that answers this question.",
      offline: "The search failed: the service could not be reached. Check your connection and try again.",
      failed: "The search failed because of a problem on our side. Please try again.",
      busy: "Too many searches right now. Wait a moment, then try again.",
      unavailable: "The search service is starting or unavailable. Try again in a few seconds.",
      invalid: "This question cannot be searched as typed. Shorten it or remove unusual characters, then try again.",
      retry: "Try again",
      empty: "Type a question first.",
      stripped: (n) => `Removed ${n} invisible control character${n === 1 ? "" : "s"} from your question.`,
      count: (n) => `${n} / ${MAX_CHARS} characters`,
      full: `Limit reached: questions can be ${MAX_CHARS} characters at most.`,
      onlyOther: "No English sources found; the passages below are in Chinese.",
      filteredOther: "Showing Chinese sources only (passage language filter).",
      show: "Show in source",
      copy: "Copy citation",
      copyAnswer: "Copy answer",
      copied: "Copied",
      copyFailed: "Copy failed: select the text and copy it by hand",
      copyLink: "Copy link to this search",
      linkCopied: "Link copied (it contains your question)",
      more: "More",
      less: "Less",
      noByline: "No author or date given",
      noAuthor: "No author given",
      noDate: "No date given",
      nd: "undated",
      fileLabel: "File",
      sourceLabel: "Source: ",
      loading: "Loading the article…",
      loadFailed: "Could not load the article: ",
      showRemoved: "Show removed text (page boilerplate, other cards)",
      close: "Close",
      section: "Section",
      page: (a, b) => (a === b ? `p. ${a}` : `pp. ${a}-${b}`),
    },
    zh: {
      searching: "正在搜索…",
      found: (n) => `找到 ${n} 条引用段落`,
      showing: (a, b) => `显示 ${b} 条中的 ${a} 条`,
      noAnswerStatus: "资料库中没有答案",
      noAnswer: "资料库中没有能回答这个问题的内容。",
      offline: "搜索失败：无法连接到服务。请检查网络后重试。",
      failed: "搜索失败：服务出现问题，请重试。",
      busy: "搜索次数过多，请稍等片刻再试。",
      unavailable: "搜索服务正在启动或暂不可用，请几秒后重试。",
      invalid: "这个问题无法按原样搜索。请缩短问题或删除特殊字符后重试。",
      retry: "重试",
      empty: "请先输入问题。",
      stripped: (n) => `已从问题中删除 ${n} 个不可见的控制字符。`,
      count: (n) => `${n} / ${MAX_CHARS} 字`,
      full: `已达上限：问题最多 ${MAX_CHARS} 字。`,
      onlyOther: "没有找到中文资料，以下为英文资料。",
      filteredOther: "仅显示英文资料（已按资料语言筛选）。",
      show: "查看原文",
      copy: "复制引用",
      copyAnswer: "复制回复",
      copied: "已复制",
      copyFailed: "复制失败，请手动选择文字复制",
      copyLink: "复制本次搜索的链接",
      linkCopied: "链接已复制（其中包含您的问题）",
      more: "展开",
      less: "收起",
      noByline: "未注明作者和日期",
      noAuthor: "未注明作者",
      noDate: "未注明日期",
      nd: "日期不详",
      fileLabel: "文件",
      sourceLabel: "来源：",
      loading: "正在加载文章…",
      loadFailed: "无法加载文章：",
      showRemoved: "显示已去除的文字（网页杂项、其他卡片）",
      close: "关闭",
      section: "章节",
      page: (a, b) => (a === b ? `第 ${a} 页` : `第 ${a}-${b} 页`),
    },
  };

  const state = {
    seq: 0, // the latest search; older responses are dropped
    controller: null, // aborts the search in flight when a newer one starts
    inFlight: null, // "query\u0000lang" of the search in flight (a repeat click is ignored)
    last: null, // {query, lang} of the latest search (retry, copy link)
    data: null, // the latest response
    lang: "en", // the question's language (UI strings of the results)
    regex: null, // query-term highlighter
    opener: null, // the button that opened the source view
    passage: null, // the passage shown in the source view
    doc: null, // the document shown in the source view
    docs: new Map(), // doc_id -> document JSON
    sheetEntry: false, // the source view pushed a history entry (Back closes it)
    skipPop: 0, // popstate events caused by the page itself
  };

  // ---- helpers -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  // Shared with feedback.js, the staff controls added to this page.
  window.medcite = Object.freeze({ element: h });

  function guessLanguage(text) {
    const han = (text.match(HAN_ALL) || []).length;
    const letters = (text.match(LETTER_ALL) || []).length;
    return letters && han / letters >= 0.2 ? "zh" : "en";
  }

  function strings() {
    return T[state.lang] || T.en;
  }

  function escapeRegExp(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // Chinese terms match anywhere; other terms match a whole word, or a word they start
  // with by a short ending only (a stem: "miscarriag" -> "miscarriages", never "after" ->
  // "afternoon").
  function termRegex(terms) {
    const parts = [...new Set((terms || []).filter((t) => typeof t === "string" && t.trim()))]
      .sort((a, b) => b.length - a.length)
      .map((t) =>
        HAN.test(t)
          ? escapeRegExp(t)
          : `(?<![\\p{L}\\p{N}])${escapeRegExp(t)}\\p{L}{0,3}(?![\\p{L}\\p{N}])`
      );
    return parts.length ? new RegExp(parts.join("|"), "giu") : null;
  }

  function appendHighlighted(parent, text, cls) {
    const regex = state.regex;
    if (!regex || !text) {
      if (text) parent.append(document.createTextNode(text));
      return;
    }
    let last = 0;
    regex.lastIndex = 0;
    for (const m of text.matchAll(regex)) {
      if (!m[0]) continue;
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      parent.append(h("mark", { class: cls, text: m[0] }));
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  // A cut point near i (code units) at a space or after punctuation, so a window starts
  // and ends on a word or sentence boundary.
  function boundary(text, i, forward) {
    const at = (j) => /[\s。！？；，、.!?;,]/.test(text[j] || "");
    if (forward) {
      for (let j = i; j < Math.min(text.length, i + 40); j += 1) if (at(j)) return j + 1;
      return Math.min(i, text.length);
    }
    for (let j = i; j > Math.max(0, i - 40); j -= 1) if (at(j - 1)) return j;
    return Math.max(0, i);
  }

  // The passage with its evidence sentences (spans into the same source) marked. A long
  // passage shows a window around its first evidence sentence; the rest is in the element
  // (the passage's text stays exact) but hidden until "More".
  function appendPassage(parent, p) {
    const length = p.end - p.start;
    const spans = (Array.isArray(p.evidence) ? p.evidence : [])
      .map((e) => [e.start - p.start, e.end - p.start])
      .filter(([a, b]) => Number.isInteger(a) && Number.isInteger(b) && a >= 0 && a < b && b <= length)
      .sort((x, y) => x[0] - y[0]);
    const unit = offsetMapper(p.text);
    const pieces = []; // [from, to, evidence?] in code units
    let last = 0;
    for (const [a, b] of spans) {
      const from = unit(a);
      const to = unit(b);
      if (from < last) continue;
      if (from > last) pieces.push([last, from, false]);
      pieces.push([from, to, true]);
      last = to;
    }
    if (last < p.text.length) pieces.push([last, p.text.length, false]);

    const text = p.text;
    let lo = 0;
    let hi = text.length;
    const clip = CLIP[p.language] || CLIP.en;
    const lead = LEAD[p.language] || LEAD.en;
    if (text.length > clip) {
      const first = pieces.find((x) => x[2]);
      lo = first && first[0] > lead ? boundary(text, first[0] - lead, true) : 0;
      if (first && lo > first[0]) lo = first[0];
      hi = Math.max(first ? first[1] : 0, lo + clip);
      hi = hi >= text.length ? text.length : boundary(text, hi, true);
      if (first && hi < first[1]) hi = first[1];
    }
    const clipped = lo > 0 || hi < text.length;
    // Split the plain pieces at lo and hi; what falls outside [lo, hi) is "more" text.
    const parts = [];
    for (const [a, b, ev] of pieces) {
      const cuts = [a, ...[lo, hi].filter((c) => c > a && c < b && !ev), b];
      for (let i = 0; i + 1 < cuts.length; i += 1) parts.push([cuts[i], cuts[i + 1], ev]);
    }
    for (const [a, b, ev] of parts) {
      const outside = clipped && (b <= lo || a >= hi);
      if (clipped && a === hi && a > 0) parent.append(h("span", { class: "ellipsis", "aria-hidden": "true" }));
      let target = parent;
      if (ev) {
        target = h("mark", { class: "evidence" });
        parent.append(target);
      } else if (outside) {
        target = h("span", { class: "more-text" });
        parent.append(target);
      }
      appendHighlighted(target, text.slice(a, b), "term");
      if (clipped && b === lo) parent.append(h("span", { class: "ellipsis", "aria-hidden": "true" }));
    }
    return clipped;
  }

  // API offsets count code points; JavaScript strings index UTF-16 code units.
  function offsetMapper(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return (i) => i;
    const units = [];
    let u = 0;
    for (const ch of text) {
      units.push(u);
      u += ch.length;
    }
    units.push(u);
    return (i) => units[Math.max(0, Math.min(i, units.length - 1))];
  }

  function codePointLength(text) {
    return /[\uD800-\uDFFF]/.test(text) ? [...text].length : text.length;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code;
    }
  }

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code || null, error.message);
    }
    return body;
  }

  // What went wrong, in the reader's words and language (never the API's English jargon).
  function errorMessage(err) {
    const t = strings();
    if (!(err instanceof ApiError)) return t.offline; // fetch itself failed: network
    if (err.status === 422 || err.status === 413) return t.invalid;
    if (err.status === 429) return t.busy;
    if (err.status === 503) return t.unavailable;
    return t.failed;
  }

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.lang = state.lang;
    statusEl.classList.toggle("error", Boolean(isError));
  }

  // ---- the question box ----------------------------------------------------------------

  function grow() {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight + 2}px`;
  }

  function updateCounter() {
    const n = input.value.length;
    const t = T[guessLanguage(input.value)];
    counter.hidden = n < COUNTER_FROM;
    counter.lang = guessLanguage(input.value);
    counter.textContent = n >= MAX_CHARS ? `${t.count(n)} · ${t.full}` : t.count(n);
    counter.classList.toggle("full", n >= MAX_CHARS);
  }

  // Control characters the API would refuse are removed here, with a note.
  function cleanInput() {
    const value = input.value;
    const found = value.match(CONTROL_ALL);
    if (!found) return;
    input.value = value.replace(CONTROL_ALL, "");
    const lang = guessLanguage(input.value);
    note.textContent = T[lang].stripped(found.length);
    note.lang = lang;
    note.hidden = false;
  }

  input.addEventListener("input", () => {
    note.hidden = true;
    cleanInput();
    updateCounter();
    grow();
  });
  // Enter searches (the question is one paragraph); Shift+Enter is a new line.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // ---- search --------------------------------------------------------------------------

  function showOnly(which) {
    // The loading and error boxes say it on screen; the status line still tells screen readers.
    statusEl.classList.toggle("visually-hidden", which === "loading" || which === "error");
    loading.hidden = which !== "loading";
    errorBox.hidden = which !== "error";
    results.hidden = which !== "results";
    examples.hidden = which !== "examples";
  }

  function clearResults() {
    cards.replaceChildren();
    urgent.hidden = true;
    urgent.textContent = "";
    noAnswer.hidden = true;
    crossLang.hidden = true;
    disclaimerEl.hidden = true;
    disclaimerEl.textContent = "";
    fillSourceFilter([]);
    state.data = null;
  }

  function setBusy(busy) {
    submit.classList.toggle("busy", busy);
    if (busy) submit.setAttribute("aria-disabled", "true");
    else submit.removeAttribute("aria-disabled");
    results.toggleAttribute("aria-busy", busy);
  }

  async function runSearch(query, lang, push) {
    const key = `${query}\u0000${lang || ""}`;
    if (state.inFlight === key) return; // the same search is already on its way
    if (state.controller) state.controller.abort(); // a newer search replaces it
    const controller = new AbortController();
    state.controller = controller;
    state.inFlight = key;
    const seq = ++state.seq;
    state.lang = guessLanguage(query);
    state.last = { query, lang };
    const current = history.state || {};
    const same = current.q === query && (current.lang || "") === (lang || "");
    if (push && !same) history.pushState({ q: query, lang }, "", "/");
    else history.replaceState({ q: query, lang }, "", "/");
    const t = strings();
    clearResults();
    showOnly("loading");
    loading.lang = state.lang;
    loadingText.textContent = t.searching;
    setStatus(t.searching);
    setBusy(true);
    const payload = { query, k: K };
    if (lang) payload.language = lang;
    const post = (body) => ({
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    const termsPromise = getJSON("/terms", post({ query }))
      .then((body) => ({
        terms: body && Array.isArray(body.terms) ? body.terms : [],
        expansions: body && Array.isArray(body.expansions) ? body.expansions : [],
      }))
      .catch(() => ({ terms: [], expansions: [] }));
    let data;
    try {
      data = await getJSON("/search", post(payload));
    } catch (err) {
      if (seq !== state.seq || controller.signal.aborted) return;
      state.inFlight = null;
      state.controller = null;
      setBusy(false);
      showError(errorMessage(err));
      return;
    }
    const terms = await termsPromise;
    if (seq !== state.seq) return;
    state.inFlight = null;
    state.controller = null;
    setBusy(false);
    render(query, data, terms);
  }

  function showError(message) {
    clearResults();
    showOnly("error");
    errorBox.lang = state.lang;
    errorText.textContent = message;
    retry.textContent = strings().retry;
    setStatus(message, true);
  }

  function render(query, data, terms) {
    state.lang = data.language === "zh" ? "zh" : "en";
    state.regex = termRegex([...terms.terms, ...terms.expansions]);
    state.data = data;
    const t = strings();
    results.lang = state.lang;
    showOnly("results");

    const notice = typeof data.urgent_notice === "string" ? data.urgent_notice.trim() : "";
    urgent.textContent = notice;
    urgent.hidden = !notice;

    const passages = Array.isArray(data.passages) ? data.passages : [];
    const abstained = data.answerable === false || passages.length === 0;
    noAnswer.textContent = abstained ? data.message || t.noAnswer : "";
    noAnswer.hidden = !abstained;

    // A question answered only in the other language says so.
    const other = passages.length > 0 && passages.every((p) => p.language && p.language !== state.lang);
    const filtered = Boolean(state.last && state.last.lang) && state.last.lang !== state.lang;
    crossLang.textContent = other ? (filtered ? t.filteredOther : t.onlyOther) : "";
    crossLang.hidden = !other;

    disclaimerEl.textContent = data.disclaimer || "";
    disclaimerEl.hidden = !data.disclaimer;

    cards.replaceChildren(...groups(passages).map((g) => group(g)));
    copyLink.textContent = t.copyLink;
    copyLinkStatus.textContent = "";
    fillSourceFilter(passages);
    setStatus(abstained ? t.noAnswerStatus : t.found(passages.length));
    document.dispatchEvent(
      new CustomEvent("medcite:results", { detail: { query, response: data } })
    );
  }

  // Passages of one article together, in the order each article first appears.
  function groups(passages) {
    const byDoc = new Map();
    passages.forEach((p, i) => {
      if (!byDoc.has(p.doc_id)) byDoc.set(p.doc_id, []);
      byDoc.get(p.doc_id).push({ p, i });
    });
    return [...byDoc.values()];
  }

  // "p. 3" / "pp. 3-4" for a passage of a PDF; "" for other sources.
  function pageLabel(p) {
    if (p.page_start == null) return "";
    return strings().page(p.page_start, p.page_end ?? p.page_start);
  }

  function authorOf(p) {
    return [p.author, p.author_title].filter(Boolean).join(" ");
  }

  // A reference a reader can follow: title, site, author, date, then file and span.
  function reference(p) {
    const t = strings();
    const pages = pageLabel(p);
    return [
      p.title || p.source,
      p.site,
      authorOf(p) || null,
      p.institution,
      p.date || t.nd,
      `${p.source}${pages ? `, ${pages}` : ""} [${p.start}:${p.end}]`,
    ]
      .filter(Boolean)
      .map((part) => part.replace(/[.。]$/, ""))
      .join(". ");
  }

  function citation(p) {
    return `“${p.text}”\n— ${reference(p)}`;
  }

  // Ready to paste into a reply: the passage, where it is from, the disclaimer.
  function supportAnswer(p) {
    const t = strings();
    const data = state.data || {};
    return [
      data.urgent_notice || null,
      p.text,
      `${t.sourceLabel}${reference(p)}`,
      data.disclaimer || null,
    ]
      .filter(Boolean)
      .join("\n\n");
  }

  // "site · author · institution · date", saying what the article does not give.
  function bylineElement(p) {
    const t = strings();
    const line = h("p", { class: "byline" });
    const parts = [];
    if (p.site) parts.push(h("span", { class: "site", text: p.site }));
    const author = authorOf(p);
    if (author) parts.push(h("span", { class: "author", text: author }));
    if (p.institution) parts.push(h("span", { class: "institution", text: p.institution }));
    if (p.date) parts.push(h("span", { class: "date", text: p.date }));
    const missing = !author && !p.date ? t.noByline : !author ? t.noAuthor : !p.date ? t.noDate : "";
    if (missing) parts.push(h("span", { class: "missing", lang: state.lang, text: missing }));
    parts.forEach((part, i) => {
      if (i) line.append(" · ");
      line.append(part);
    });
    return line;
  }

  function group(items) {
    const first = items[0].p;
    const id = `card-${items[0].i + 1}`;
    return h(
      "li",
      { class: "group", "data-source": first.source, "data-article": first.doc_id },
      h(
        "article",
        { "aria-labelledby": id },
        h(
          "h3",
          { class: "card-title", id, lang: first.language },
          h("span", { class: "rank", text: `${first.rank ?? items[0].i + 1}` }),
          h("span", { class: "title", text: first.title || first.source })
        ),
        bylineElement(first),
        h("ol", { class: "passages" }, ...items.map(({ p, i }) => card(p, i, id)))
      )
    );
  }

  function card(p, i, titleId) {
    const t = strings();
    const passage = h("blockquote", { class: "passage", lang: p.language });
    const clipped = appendPassage(passage, p);
    // The source breaks this summary off: an ellipsis (CSS), the cited text stays exact.
    if (p.truncated === true) passage.classList.add("truncated");
    let more = null;
    if (clipped) {
      passage.classList.add("clipped");
      more = h("button", { type: "button", class: "more", "aria-expanded": "false", lang: state.lang });
      more.textContent = t.more;
      more.addEventListener("click", () => {
        const open = passage.classList.toggle("expanded");
        more.setAttribute("aria-expanded", String(open));
        more.textContent = open ? t.less : t.more;
      });
    }
    const show = h("button", { type: "button", class: "show-source", "aria-describedby": titleId });
    show.textContent = t.show;
    show.addEventListener("click", () => openSource(p, show));
    const copyStatus = h("span", { class: "copy-status", role: "status" });
    // A button that copies `text` (also kept in its data attribute, for tests and staff).
    const copier = (cls, data, label, text) => {
      const button = h("button", {
        type: "button",
        class: cls,
        "aria-describedby": titleId,
        [data]: text,
      });
      button.textContent = label;
      button.addEventListener("click", () => copyText(button, text, copyStatus));
      return button;
    };
    const copy = copier("copy-citation", "data-citation", t.copy, citation(p));
    const answer = copier("copy-answer", "data-answer", t.copyAnswer, supportAnswer(p));
    return h(
      "li",
      {
        class: "card",
        "data-source": p.source,
        "data-doc-id": p.doc_id,
        "data-chunk-id": p.chunk_id || `${p.start}:${p.end}`,
        "data-language": p.language,
        "data-rank": String(p.rank ?? i + 1),
      },
      passage,
      more,
      h(
        "p",
        { class: "cite" },
        h("span", { class: "file-label", lang: state.lang, text: `${t.fileLabel}:` }),
        h("code", { class: "source", text: p.source }),
        h("span", { class: "span", text: `[${p.start}:${p.end}]` }),
        pageLabel(p) ? h("span", { class: "pages", text: pageLabel(p) }) : null,
        p.section ? h("span", { class: "section", lang: p.language, text: `§ ${p.section}` }) : null
      ),
      h("div", { class: "actions", lang: state.lang }, show, copy, answer, copyStatus),
      h("div", { class: "passage-actions" })
    );
  }

  function fillSourceFilter(passages) {
    const sources = [...new Set(passages.map((p) => p.source))];
    sourceSelect.replaceChildren(sourceSelect.options[0]);
    for (const s of sources) sourceSelect.append(h("option", { value: s, text: s }));
    sourceSelect.value = "";
    sourceSelect.disabled = sources.length < 2;
  }

  function applySourceFilter() {
    const wanted = sourceSelect.value;
    let shown = 0;
    let all = 0;
    for (const li of cards.children) {
      li.hidden = Boolean(wanted) && li.dataset.source !== wanted;
      const n = li.querySelectorAll(".card").length;
      all += n;
      if (!li.hidden) shown += n;
    }
    const t = strings();
    setStatus(wanted ? t.showing(shown, all) : t.found(all));
  }

  // ---- copying -------------------------------------------------------------------------

  async function writeClipboard(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) {
        // fall through to the legacy path (permissions, unfocused document)
      }
    }
    const area = h("textarea", { readonly: "", "aria-hidden": "true", class: "clip" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (_) {
      ok = false;
    }
    area.remove();
    return ok;
  }

  async function copyText(button, text, statusSpan, done) {
    const t = strings();
    const ok = await writeClipboard(text || "");
    button.focus();
    statusSpan.textContent = ok ? done || t.copied : t.copyFailed;
    statusSpan.classList.toggle("error", !ok);
    clearTimeout(statusSpan._timer);
    statusSpan._timer = setTimeout(() => {
      statusSpan.textContent = "";
    }, 5000);
  }

  // The only way the question gets into a URL: the reader asks for a link.
  function searchLink() {
    const params = new URLSearchParams();
    if (state.last) {
      params.set("q", state.last.query);
      if (state.last.lang) params.set("lang", state.last.lang);
    }
    return `${location.origin}/?${params.toString()}`;
  }

  copyLink.addEventListener("click", () =>
    copyText(copyLink, searchLink(), copyLinkStatus, strings().linkCopied)
  );

  // ---- the source view -----------------------------------------------------------------

  async function openSource(passage, opener) {
    const t = strings();
    state.opener = opener;
    state.passage = passage;
    state.doc = null;
    sourceClose.setAttribute("aria-label", t.close);
    boilerplateLabel.textContent = t.showRemoved;
    sourceTitle.textContent = passage.title || passage.source;
    sourceTitle.lang = passage.language;
    sourceMeta.textContent = t.loading;
    sourceText.replaceChildren();
    if (!dialog.open) {
      dialog.showModal();
      // An entry of its own, so Back (a phone's back gesture) closes the view.
      history.pushState({ ...(history.state || {}), sheet: true }, "", location.href);
      state.sheetEntry = true;
    }
    sourceClose.focus();
    let doc = state.docs.get(passage.doc_id);
    if (!doc) {
      try {
        doc = await getJSON(`/documents/${encodeURIComponent(passage.doc_id)}`);
      } catch (err) {
        if (state.passage === passage) sourceMeta.textContent = t.loadFailed + err.message;
        return;
      }
      state.docs.set(passage.doc_id, doc);
    }
    if (state.passage !== passage || !dialog.open) return;
    state.doc = doc;
    renderSource();
    sourceText.focus({ preventScroll: true });
  }

  // Ranges [start, end) in code points: the document's kept segments merged with the
  // cited span, so the highlight is one element even if it ever crossed a segment border.
  function keptRanges(doc, start, end, showAll) {
    const total = codePointLength(doc.text);
    const ranges = showAll
      ? [{ start: 0, end: total, section: null }]
      : doc.segments.map((s) => ({ start: s.start, end: s.end, section: s.section }));
    ranges.push({ start, end, section: null });
    ranges.sort((a, b) => a.start - b.start || b.end - a.end);
    const merged = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r.start <= last.end) {
        last.end = Math.max(last.end, r.end);
        if (!last.section && r.start === last.start) last.section = r.section;
      } else {
        merged.push({ ...r });
      }
    }
    return merged;
  }

  function renderSource() {
    const doc = state.doc;
    const p = state.passage;
    if (!doc || !p) return;
    const t = strings();
    const showAll = boilerplateBox.checked;
    const unit = offsetMapper(doc.text);
    const slice = (a, b) => doc.text.slice(unit(a), unit(b));
    const segments = doc.segments;
    const inSegment = (i) => segments.some((s) => s.start <= i && i < s.end);
    // A PDF's page starts (code points): a marker "p. N" wherever the shown text enters a
    // new page.
    const pages = Array.isArray(doc.pages) ? doc.pages : [];
    const pageAt = (i) => pages.filter((start) => start <= i).length;
    let shownPage = 0;
    function pageMarker(x) {
      if (!pages.length || pageAt(x) === shownPage) return null;
      shownPage = pageAt(x);
      // The label is CSS content (::before), so the view's text stays the source text.
      return h("span", {
        class: "sv-page",
        "data-page": String(shownPage),
        "data-label": t.page(shownPage, shownPage),
      });
    }
    function pageCuts(cuts, a, b) {
      for (const start of pages) if (start > a && start < b) cuts.add(start);
      return [...cuts].sort((x, y) => x - y);
    }

    // Kept text plain, removed text dimmed (visible only when showAll).
    function appendRange(parent, a, b) {
      const cuts = new Set([a, b]);
      for (const s of segments) {
        if (s.start > a && s.start < b) cuts.add(s.start);
        if (s.end > a && s.end < b) cuts.add(s.end);
      }
      const points = pageCuts(cuts, a, b);
      for (let i = 0; i + 1 < points.length; i += 1) {
        const [x, y] = [points[i], points[i + 1]];
        const marker = pageMarker(x);
        if (marker) parent.append(marker);
        if (inSegment(x)) appendHighlighted(parent, slice(x, y), "term");
        else parent.append(h("span", { class: "removed", text: slice(x, y) }));
      }
    }

    const meta = [
      doc.site || p.site || null,
      [doc.author, doc.author_title].filter(Boolean).join(" ") || null,
      doc.institution,
      doc.date,
      `${p.source} [${p.start}:${p.end}]`,
      pageLabel(p) || null,
      p.section ? `${t.section}: ${p.section}` : null,
    ].filter(Boolean);
    sourceMeta.textContent = meta.join(" · ");

    const blocks = [];
    let section = null;
    for (const r of keptRanges(doc, p.start, p.end, showAll)) {
      const marker = pageMarker(r.start); // a new page starts before its section heading
      if (marker) blocks.push(marker);
      if (!showAll && r.section && r.section !== section) {
        blocks.push(h("h3", { class: "sv-section", text: r.section }));
      }
      if (r.section) section = r.section;
      const block = h("div", { class: "sv-block" });
      if (p.start >= r.start && p.end <= r.end) {
        appendRange(block, r.start, p.start);
        const mark = h("mark", { class: "cited", id: "cited" });
        const points = pageCuts(new Set([p.start, p.end]), p.start, p.end);
        for (let i = 0; i + 1 < points.length; i += 1) {
          const marker = pageMarker(points[i]);
          if (marker) mark.append(marker);
          appendHighlighted(mark, slice(points[i], points[i + 1]), "term");
        }
        block.append(mark);
        appendRange(block, p.end, r.end);
      } else {
        appendRange(block, r.start, r.end);
      }
      blocks.push(block);
    }
    sourceText.lang = doc.language;
    sourceText.replaceChildren(...blocks);
    const mark = $("cited");
    if (mark) mark.scrollIntoView({ block: "center", inline: "nearest", behavior: "instant" });
  }

  function closeSource() {
    if (dialog.open) dialog.close();
  }

  dialog.addEventListener("close", () => {
    state.passage = null;
    if (state.sheetEntry) {
      // closed by the button, Escape or the backdrop: drop the view's history entry
      state.sheetEntry = false;
      state.skipPop += 1;
      history.back();
    }
    const opener = state.opener;
    state.opener = null;
    if (opener && opener.isConnected) opener.focus();
  });
  // A click on the backdrop (the dialog element itself, outside its box) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside =
      event.clientX >= box.left &&
      event.clientX <= box.right &&
      event.clientY >= box.top &&
      event.clientY <= box.bottom;
    if (!inside) closeSource();
  });
  sourceClose.addEventListener("click", closeSource);
  boilerplateBox.addEventListener("change", renderSource);

  // ---- wiring --------------------------------------------------------------------------

  function startSearch(push) {
    cleanInput();
    const query = input.value.trim();
    if (!query) {
      state.lang = guessLanguage(input.value);
      setStatus(strings().empty, true);
      input.focus();
      return;
    }
    // On a phone the keyboard would cover the results: put it away.
    if (NARROW.matches) input.blur();
    runSearch(query, langSelect.value, push);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    startSearch(true);
  });

  retry.addEventListener("click", () => {
    if (!state.last) return;
    state.inFlight = null;
    runSearch(state.last.query, state.last.lang, false);
  });

  for (const button of examples.querySelectorAll(".example")) {
    button.addEventListener("click", () => {
      input.value = button.textContent;
      updateCounter();
      grow();
      startSearch(true);
    });
  }

  langSelect.addEventListener("change", () => {
    const query = input.value.trim();
    if (query) runSearch(query, langSelect.value, false);
  });
  sourceSelect.addEventListener("change", applySourceFilter);

  function showEmpty() {
    if (state.controller) state.controller.abort();
    state.controller = null;
    state.inFlight = null;
    state.seq += 1;
    setBusy(false);
    clearResults();
    showOnly("examples");
    setStatus("");
  }

  function restore(entry) {
    const query = entry && typeof entry.q === "string" ? entry.q : "";
    const lang = entry && (entry.lang === "zh" || entry.lang === "en") ? entry.lang : "";
    const last = state.last;
    if (query && last && state.data && last.query === query && (last.lang || "") === lang) return;
    input.value = query;
    langSelect.value = lang;
    updateCounter();
    grow();
    if (query) runSearch(query, lang, false);
    else showEmpty();
  }

  window.addEventListener("popstate", (event) => {
    if (state.skipPop > 0) {
      state.skipPop -= 1;
      return;
    }
    if (dialog.open) {
      // Back with the source view open closes it (and stays on the same results).
      state.sheetEntry = false;
      closeSource();
      return;
    }
    restore(event.state);
  });

  // A shared link (?q=...) runs its search once; the question then leaves the address bar.
  function loadFromUrl() {
    const params = new URLSearchParams(location.search);
    const fromUrl = (params.get("q") || "").slice(0, MAX_CHARS).replace(CONTROL_ALL, "").trim();
    const entry = fromUrl ? { q: fromUrl, lang: params.get("lang") } : history.state;
    if (!fromUrl && !(entry && entry.q)) {
      showEmpty();
      input.focus();
      return;
    }
    restore(entry);
  }

  filters.open = !window.matchMedia("(max-width: 36rem)").matches;
  updateCounter();
  loadFromUrl();
})();
