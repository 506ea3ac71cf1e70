// medcite search page. Plain DOM, no framework, no build step.
// Every string from the corpus or the API reaches the page through textContent or a text
// node, never through innerHTML: an article containing <script> shows as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const input = $("q");
  const langSelect = $("lang");
  const sourceSelect = $("source-filter");
  const statusEl = $("status");
  const results = $("results");
  const urgent = $("urgent");
  const noAnswer = $("no-answer");
  const disclaimerEl = $("disclaimer");
  const cards = $("cards");
  const dialog = $("source-view");
  const sourceTitle = $("source-title");
  const sourceMeta = $("source-meta");
  const sourceText = $("source-text");
  const sourceClose = $("source-close");
  const boilerplateBox = $("source-boilerplate");
  const boilerplateLabel = $("source-boilerplate-label");

  const K = 8;
  const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2ebef}]/u;
  const HAN_ALL = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2ebef}]/gu;
  const LETTER_ALL = /\p{L}/gu;

  const T = {
    en: {
      searching: "Searching…",
      found: (n) => `${n} cited passage${n === 1 ? "" : "s"}`,
      showing: (a, b) => `Showing ${a} of ${b} passages`,
      noAnswerStatus: "No answer in the corpus",
      noAnswer: "The corpus has no passage that answers this question.",
      error: "Search failed: ",
      empty: "Type a question first.",
      show: "Show in source",
      copy: "Copy citation",
      copied: "Copied",
      copyFailed: "Copy failed: select the citation and copy it by hand",
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
      error: "搜索失败：",
      empty: "请先输入问题。",
      show: "查看原文",
      copy: "复制引用",
      copied: "已复制",
      copyFailed: "复制失败，请手动选择引用文字复制",
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
    lang: "en", // the question's language (UI strings of the results)
    regex: null, // query-term highlighter
    opener: null, // the button that opened the source view
    passage: null, // the passage shown in the source view
    doc: null, // the document shown in the source view
    docs: new Map(), // doc_id -> document JSON
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

  // Chinese terms match anywhere; other terms (possibly English stems) at a word start.
  function termRegex(terms) {
    const parts = [...new Set((terms || []).filter((t) => typeof t === "string" && t.trim()))]
      .sort((a, b) => b.length - a.length)
      .map((t) => (HAN.test(t) ? escapeRegExp(t) : `\\b${escapeRegExp(t)}[\\p{L}\\p{N}]*`));
    return parts.length ? new RegExp(parts.join("|"), "giu") : null;
  }

  function appendHighlighted(parent, text, cls) {
    const regex = state.regex;
    if (!regex || !text) {
      parent.append(document.createTextNode(text));
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

  // The passage with its evidence sentences (spans into the same source) marked.
  function appendPassage(parent, p) {
    const length = p.end - p.start;
    const spans = (Array.isArray(p.evidence) ? p.evidence : [])
      .map((e) => [e.start - p.start, e.end - p.start])
      .filter(([a, b]) => Number.isInteger(a) && Number.isInteger(b) && a >= 0 && a < b && b <= length)
      .sort((x, y) => x[0] - y[0]);
    const unit = offsetMapper(p.text);
    let last = 0;
    for (const [a, b] of spans) {
      const from = unit(a);
      const to = unit(b);
      if (from < last) continue;
      appendHighlighted(parent, p.text.slice(last, from), "term");
      const mark = h("mark", { class: "evidence" });
      appendHighlighted(mark, p.text.slice(from, to), "term");
      parent.append(mark);
      last = to;
    }
    appendHighlighted(parent, p.text.slice(last), "term");
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

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error && body.error.message;
      throw new Error(message || `HTTP ${response.status}`);
    }
    return body;
  }

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", Boolean(isError));
  }

  // ---- search --------------------------------------------------------------------------

  function updateUrl(query, lang, push) {
    const params = new URLSearchParams();
    params.set("q", query);
    if (lang) params.set("lang", lang);
    const url = `/?${params.toString()}`;
    if (location.pathname + location.search === url) return;
    if (push) history.pushState({ q: query, lang }, "", url);
    else history.replaceState({ q: query, lang }, "", url);
  }

  async function runSearch(query, lang, push) {
    const seq = ++state.seq;
    state.lang = guessLanguage(query);
    setStatus(strings().searching);
    results.setAttribute("aria-busy", "true");
    updateUrl(query, lang, push);
    document.title = `${query} — medcite`;
    const payload = { query, k: K };
    if (lang) payload.language = lang;
    const termsPromise = getJSON(`/terms?q=${encodeURIComponent(query)}`)
      .then((body) => (body && Array.isArray(body.terms) ? body.terms : []))
      .catch(() => []);
    let data;
    try {
      data = await getJSON("/search", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      });
    } catch (err) {
      if (seq !== state.seq) return;
      results.removeAttribute("aria-busy");
      setStatus(strings().error + err.message, true);
      return;
    }
    const terms = await termsPromise;
    if (seq !== state.seq) return;
    render(data, terms);
  }

  function render(data, terms) {
    state.lang = data.language === "zh" ? "zh" : "en";
    state.regex = termRegex(terms);
    const t = strings();
    results.lang = state.lang;
    results.hidden = false;
    results.removeAttribute("aria-busy");

    const notice = typeof data.urgent_notice === "string" ? data.urgent_notice.trim() : "";
    urgent.textContent = notice;
    urgent.hidden = !notice;

    const passages = Array.isArray(data.passages) ? data.passages : [];
    const abstained = data.answerable === false || passages.length === 0;
    noAnswer.textContent = abstained ? data.message || t.noAnswer : "";
    noAnswer.hidden = !abstained;

    disclaimerEl.textContent = data.disclaimer || "";
    disclaimerEl.hidden = !data.disclaimer;

    cards.replaceChildren(...passages.map((p, i) => card(p, i)));
    fillSourceFilter(passages);
    setStatus(abstained ? t.noAnswerStatus : t.found(passages.length));
  }

  // "p. 3" / "pp. 3-4" for a passage of a PDF; "" for other sources.
  function pageLabel(p) {
    if (p.page_start == null) return "";
    return strings().page(p.page_start, p.page_end ?? p.page_start);
  }

  function citation(p) {
    const pages = pageLabel(p);
    return `${p.title} — ${p.source}${pages ? `, ${pages}` : ""} [${p.start}:${p.end}]`;
  }

  function card(p, i) {
    const t = strings();
    const id = `card-${i + 1}`;
    const byline = [
      [p.author, p.author_title].filter(Boolean).join(" "),
      p.institution,
      p.date,
    ].filter(Boolean);
    const passage = h("blockquote", { class: "passage", lang: p.language });
    appendPassage(passage, p);
    // The source breaks this summary off: an ellipsis (CSS), the cited text stays exact.
    if (p.truncated === true) passage.classList.add("truncated");
    const show = h("button", { type: "button", class: "show-source", "aria-describedby": id });
    show.textContent = t.show;
    show.addEventListener("click", () => openSource(p, show));
    const copy = h("button", {
      type: "button",
      class: "copy-citation",
      "aria-describedby": id,
      "data-citation": citation(p),
    });
    copy.textContent = t.copy;
    const copyStatus = h("span", { class: "copy-status", role: "status" });
    copy.addEventListener("click", () => copyCitation(copy, copyStatus));
    return h(
      "li",
      {
        class: "card",
        "data-source": p.source,
        "data-doc-id": p.doc_id,
        "data-language": p.language,
      },
      h(
        "article",
        { "aria-labelledby": id },
        h(
          "h3",
          { class: "card-title", id, lang: p.language },
          h("span", { class: "rank", text: `${p.rank ?? i + 1}` }),
          h("span", { class: "title", text: p.title || p.source })
        ),
        byline.length ? bylineElement(byline, p.date) : null,
        passage,
        h(
          "p",
          { class: "cite" },
          h("code", { class: "source", text: p.source }),
          " ",
          h("span", { class: "span", text: `[${p.start}:${p.end}]` }),
          pageLabel(p) ? h("span", { class: "pages", text: pageLabel(p) }) : null,
          p.section ? h("span", { class: "section", lang: p.language, text: `§ ${p.section}` }) : null
        ),
        h("div", { class: "actions", lang: state.lang }, show, copy, copyStatus)
      )
    );
  }

  // "author · institution · date"; the date never breaks at its hyphens.
  function bylineElement(parts, date) {
    const line = h("p", { class: "byline" });
    parts.forEach((part, i) => {
      if (i) line.append(" · ");
      line.append(h("span", { class: part === date ? "date" : null, text: part }));
    });
    return line;
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
    const all = [...cards.children];
    let shown = 0;
    for (const li of all) {
      li.hidden = Boolean(wanted) && li.dataset.source !== wanted;
      if (!li.hidden) shown += 1;
    }
    const t = strings();
    setStatus(wanted ? t.showing(shown, all.length) : t.found(all.length));
  }

  // ---- copy a citation -----------------------------------------------------------------

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

  async function copyCitation(button, statusSpan) {
    const t = strings();
    const ok = await writeClipboard(button.dataset.citation || "");
    button.focus();
    statusSpan.textContent = ok ? t.copied : t.copyFailed;
    statusSpan.classList.toggle("error", !ok);
    clearTimeout(statusSpan._timer);
    statusSpan._timer = setTimeout(() => {
      statusSpan.textContent = "";
    }, 5000);
  }

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
    if (!dialog.open) dialog.showModal();
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
      `${p.source} [${p.start}:${p.end}]`,
      pageLabel(p) || null,
      p.section ? `${t.section}: ${p.section}` : null,
      [doc.author, doc.author_title].filter(Boolean).join(" ") || null,
      doc.institution,
      doc.date,
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

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (!query) {
      setStatus(T[guessLanguage(input.value)].empty, true);
      input.focus();
      return;
    }
    runSearch(query, langSelect.value, true);
  });

  langSelect.addEventListener("change", () => {
    const query = input.value.trim();
    if (query) runSearch(query, langSelect.value, false);
  });
  sourceSelect.addEventListener("change", applySourceFilter);

  function loadFromUrl() {
    const params = new URLSearchParams(location.search);
    const query = (params.get("q") || "").trim();
    const lang = params.get("lang");
    input.value = query;
    langSelect.value = lang === "zh" || lang === "en" ? lang : "";
    if (query) {
      runSearch(query, langSelect.value, false);
    } else {
      state.seq += 1;
      results.hidden = true;
      cards.replaceChildren();
      setStatus("");
      input.focus();
    }
  }

  window.addEventListener("popstate", () => {
    closeSource();
    loadFromUrl();
  });
  loadFromUrl();
})();
