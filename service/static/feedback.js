// medcite staff feedback: "helpful / not helpful" on each passage and "none of these
// answers" on a result, for support staff who entered their staff key.
//
// Contract with app.js: after rendering results it dispatches
//   document.dispatchEvent(new CustomEvent("medcite:results", {detail: {query, response}}))
// and each passage element carries data-doc-id and data-chunk-id (or "start:end") and holds
// an empty <div class="passage-actions"> that this file fills.
//
// The key is kept in sessionStorage (this tab only, gone when it closes) and sent as
// "Authorization: Bearer <key>", never in a URL. Without a key the page shows no buttons.
"use strict";

(() => {
  const STORE = "medcite.staffKey";
  const T = {
    en: {
      signIn: "Staff sign-in",
      signedIn: "Staff feedback on",
      signOut: "Sign out",
      keyLabel: "Staff key",
      keyHint: "Kept in this tab only; never put in a link.",
      submit: "Sign in",
      cancel: "Cancel",
      refused: "That key was not accepted.",
      failed: "Could not check the key: ",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      none: "None of these answers",
      noneAbstained: "Right: the corpus has no answer",
      save: "Save this question as a test case",
      always: "Questions are stored with their text (MEDCITE_LOG_QUERIES)",
      saved: "Saved",
      saveFailed: "Not saved: ",
      expired: "Your staff key is no longer accepted: sign in again.",
      group: "Was this passage helpful?",
      heading: "Staff feedback",
    },
    zh: {
      signIn: "员工登录",
      signedIn: "员工反馈已开启",
      signOut: "退出",
      keyLabel: "员工密钥",
      keyHint: "仅保存在此标签页中，不会出现在链接里。",
      submit: "登录",
      cancel: "取消",
      refused: "密钥无效。",
      failed: "无法验证密钥：",
      helpful: "有帮助",
      notHelpful: "没帮助",
      none: "这些段落都不能回答",
      noneAbstained: "确认：资料库中没有答案",
      save: "把这个问题保存为测试用例",
      always: "问题连同原文一起保存（MEDCITE_LOG_QUERIES）",
      saved: "已保存",
      saveFailed: "未保存：",
      expired: "员工密钥已失效，请重新登录。",
      group: "这个段落有帮助吗？",
      heading: "员工反馈",
    },
  };

  const state = {
    enabled: false, // the server has feedback (a staff or admin key is configured)
    access: null, // GET /feedback/enabled for the stored key
    detail: null, // the last "medcite:results" event's detail
    marks: new Map(), // passage key -> label, for the results shown
    none: false,
    saveQuestion: false,
  };

  function key() {
    try {
      return sessionStorage.getItem(STORE);
    } catch (_) {
      return null;
    }
  }

  function setKey(value) {
    try {
      if (value) sessionStorage.setItem(STORE, value);
      else sessionStorage.removeItem(STORE);
    } catch (_) {
      // storage disabled: staff mode lasts until the page is left
    }
  }

  function pageLang() {
    const lang = state.detail && state.detail.response && state.detail.response.language;
    return lang === "zh" ? "zh" : "en";
  }

  // The page's element builder (app.js runs first: both scripts are deferred, in order).
  const el = window.medcite.element;

  // Both languages in the staff controls outside a result (the footer, the dialog).
  function both(name) {
    return `${T.en[name]} · ${T.zh[name]}`;
  }

  // {enabled, signed_in, ...} from the server; signed_in false for a refused key.
  async function checkAccess(candidate) {
    const headers = candidate ? { Authorization: `Bearer ${candidate}` } : {};
    const r = await fetch("/feedback/enabled", { headers, cache: "no-store" });
    if (r.ok) return r.json();
    if (r.status === 401) return { enabled: true, signed_in: false };
    throw new Error(`HTTP ${r.status}`);
  }

  // ---- the footer link and the sign-in dialog --------------------------------------------

  const foot = document.querySelector("footer") || document.body;
  const bar = el("p", { class: "staff-bar", id: "staff-bar", hidden: "" });
  foot.append(bar);

  const input = el("input", {
    id: "staff-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "staff-key-hint staff-error",
  });
  const error = el("p", { id: "staff-error", class: "staff-error", role: "alert" });
  const cancel = el("button", { type: "button", class: "staff-cancel", text: both("cancel") });
  const dialog = el(
    "dialog",
    { id: "staff-dialog", class: "staff-dialog", "aria-labelledby": "staff-dialog-title" },
    el(
      "form",
      { method: "dialog", id: "staff-form" },
      el("h2", { id: "staff-dialog-title", text: both("signIn") }),
      el("label", { for: "staff-key", text: both("keyLabel") }),
      input,
      el("p", { id: "staff-key-hint", class: "staff-hint", text: T.en.keyHint, lang: "en" }),
      error,
      el(
        "div",
        { class: "staff-buttons" },
        el("button", { type: "submit", id: "staff-submit", text: both("submit") }),
        cancel
      )
    )
  );
  document.body.append(dialog);

  function renderBar() {
    bar.replaceChildren();
    bar.hidden = !state.enabled && !state.access;
    if (state.access) {
      const out = el("button", { type: "button", id: "staff-signout", text: both("signOut") });
      out.addEventListener("click", signOut);
      bar.append(el("span", { class: "staff-on", text: both("signedIn") }), " ", out);
    } else {
      const open = el("button", { type: "button", id: "staff-signin", text: both("signIn") });
      open.addEventListener("click", () => {
        error.textContent = "";
        input.value = "";
        dialog.showModal();
        input.focus();
      });
      bar.append(open);
    }
  }

  dialog.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) return;
    try {
      const answer = await checkAccess(candidate);
      if (!answer.signed_in) {
        error.textContent = both("refused");
        input.select();
        return;
      }
      setKey(candidate);
      state.access = answer;
      input.value = "";
      dialog.close();
      renderBar();
      decorate();
    } catch (err) {
      error.textContent = T.en.failed + err.message;
    }
  });
  cancel.addEventListener("click", () => dialog.close());

  function signOut(message) {
    setKey(null);
    state.access = null;
    renderBar();
    decorate();
    if (typeof message === "string") {
      bar.append(" ", el("span", { class: "staff-error", role: "alert", text: message }));
    }
  }

  // ---- the buttons on a result ------------------------------------------------------------

  function passageOf(node) {
    const response = state.detail && state.detail.response;
    const passages = (response && Array.isArray(response.passages) && response.passages) || [];
    const docId = node.dataset.docId;
    const chunkId = node.dataset.chunkId || "";
    return (
      passages.find(
        (p) => p.doc_id === docId && (p.chunk_id === chunkId || `${p.start}:${p.end}` === chunkId)
      ) || null
    );
  }

  function passageKey(p) {
    return `${p.doc_id}\u0000${p.chunk_id || `${p.start}:${p.end}`}`;
  }

  async function send(body, status) {
    const t = T[pageLang()];
    const k = key();
    if (!k) return false;
    status.classList.remove("error");
    status.textContent = "";
    try {
      const r = await fetch("/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${k}` },
        body: JSON.stringify(body),
        cache: "no-store",
      });
      if (r.status === 401 || r.status === 403) {
        signOut(t.expired);
        return false;
      }
      if (!r.ok) {
        let message = `HTTP ${r.status}`;
        try {
          message = (await r.json()).error.message || message;
        } catch (_) {
          // not JSON: keep the status
        }
        status.classList.add("error");
        status.textContent = t.saveFailed + message;
        return false;
      }
      status.textContent = t.saved;
      return true;
    } catch (err) {
      status.classList.add("error");
      status.textContent = t.saveFailed + err.message;
      return false;
    }
  }

  function base() {
    const response = state.detail.response || {};
    return {
      query: state.detail.query,
      language: response.language === "zh" || response.language === "en" ? response.language : null,
      save_question: state.saveQuestion,
    };
  }

  function passageBody(p, label) {
    const body = { ...base(), label, doc_id: p.doc_id };
    if (p.chunk_id) body.chunk_id = p.chunk_id;
    else {
      body.start = p.start;
      body.end = p.end;
    }
    return body;
  }

  function pressed(buttons, label) {
    for (const [name, button] of Object.entries(buttons)) {
      button.setAttribute("aria-pressed", String(name === label));
    }
  }

  function passageControls(node, p) {
    const t = T[pageLang()];
    const buttons = {
      helpful: el("button", { type: "button", class: "fb-helpful", "aria-pressed": "false", text: t.helpful }),
      not_helpful: el("button", {
        type: "button",
        class: "fb-not-helpful",
        "aria-pressed": "false",
        text: t.notHelpful,
      }),
    };
    const status = el("span", { class: "fb-status", role: "status" });
    pressed(buttons, state.marks.get(passageKey(p)));
    for (const [label, button] of Object.entries(buttons)) {
      button.addEventListener("click", async () => {
        if (await send(passageBody(p, label), status)) {
          state.marks.set(passageKey(p), label);
          pressed(buttons, label);
        }
      });
    }
    return el(
      "div",
      { class: "fb-passage", role: "group", "aria-label": t.group, lang: pageLang() },
      buttons.helpful,
      buttons.not_helpful,
      status
    );
  }

  function resultControls() {
    const t = T[pageLang()];
    const always = state.access && state.access.question_text === "always";
    const box = el("input", { type: "checkbox", id: "fb-save" });
    box.checked = always || state.saveQuestion;
    box.disabled = Boolean(always);
    const passages = state.detail.response && state.detail.response.passages;
    const none = el("button", {
      type: "button",
      id: "fb-none",
      "aria-pressed": String(state.none),
      text: Array.isArray(passages) && passages.length ? t.none : t.noneAbstained,
    });
    const status = el("span", { class: "fb-status", id: "fb-status", role: "status" });
    none.addEventListener("click", async () => {
      if (await send({ ...base(), label: "none" }, status)) {
        state.none = true;
        none.setAttribute("aria-pressed", "true");
      }
    });
    box.addEventListener("change", async () => {
      state.saveQuestion = box.checked;
      if (!box.checked) return;
      // Marks already given are sent again with the text (a re-mark replaces, so this is safe).
      for (const [k, label] of state.marks) {
        const p = (state.detail.response.passages || []).find((x) => passageKey(x) === k);
        if (p && !(await send(passageBody(p, label), status))) return;
      }
      if (state.none) await send({ ...base(), label: "none" }, status);
    });
    return el(
      "div",
      { class: "fb-result", id: "fb-result", role: "group", "aria-label": t.heading, lang: pageLang() },
      el("span", { class: "fb-heading", text: t.heading }),
      el("label", { class: "fb-save", for: "fb-save" }, box, " ", always ? t.always : t.save),
      none,
      status
    );
  }

  function decorate() {
    document.querySelectorAll(".fb-passage, #fb-result").forEach((n) => n.remove());
    if (!state.access || !state.detail) return;
    for (const node of document.querySelectorAll("[data-doc-id][data-chunk-id]")) {
      const slot = node.querySelector(".passage-actions");
      const p = slot && passageOf(node);
      if (p) slot.append(passageControls(node, p));
    }
    const results = document.getElementById("results");
    if (!results) return;
    const cards = document.getElementById("cards");
    const controls = resultControls();
    if (cards && cards.parentNode === results) results.insertBefore(controls, cards);
    else results.append(controls);
  }

  document.addEventListener("medcite:results", (event) => {
    state.detail = event.detail || null;
    state.marks = new Map();
    state.none = false;
    state.saveQuestion = false;
    decorate();
  });

  // ---- start: is feedback on, and is the stored key still good? ---------------------------

  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/feedback.css";
  document.head.append(link);

  (async () => {
    try {
      const stored = key();
      const answer = await checkAccess(stored);
      state.enabled = Boolean(answer.enabled);
      state.access = answer.signed_in ? answer : null;
      if (stored && !answer.signed_in) setKey(null); // the key was changed on the server
    } catch (_) {
      state.enabled = false;
    }
    renderBar();
    decorate();
  })();
})();
