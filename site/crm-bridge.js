/*
 * crm-bridge.js: where a visitor came from, the application form and the messenger links, for crm-bridge.
 *
 * Add to every page of the site (no build step, no dependencies):
 *   <script src="https://go.agency.com/crm-bridge.js" data-api="https://go.agency.com"
 *           data-cookie-domain=".agency.com" data-consent-version="privacy-2024-05"></script>
 *   <script>CrmBridge.attachForm(document.querySelector("#apply"));</script>
 *
 * It keeps a first and a last touch (referral code, UTM tags, ad click ids, landing page, external
 * referrer) in one first-party cookie, sends them with each application and messenger click, and adds
 * them to /go/{channel} links. It talks to no one but the crm-bridge API. With data-consent="required"
 * it stores and reads nothing until the site's cookie banner calls CrmBridge.consent(true).
 */
(function () {
  "use strict";
  if (window.CrmBridge) return; // included twice: the first copy already listens

  const TOUCH_COOKIE = "crm_bridge_touch";
  const SESSION_COOKIE = "visitor_session"; // the name the API's /go reads and sets
  const SESSION_DAYS = 365;
  const MAX_COOKIE_BYTES = 3500; // browsers silently refuse a cookie over 4096 bytes, name and attributes included
  const UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id"];
  const CLICK_IDS = ["gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "yclid", "ctwa_clid"];
  const TAGS = ["referral_code", ...UTM, ...CLICK_IDS]; // a touch's tags; the query parameter has the same name but ref
  const param = (tag) => (tag === "referral_code" ? "ref" : tag);
  const FORM_FIELDS = ["name", "first_name", "last_name", "phone", "email", "user_type", "preferred_language",
    "program", "university", "message"];
  const APPLICATIONS = "/api/v1/applications";
  const MESSENGER_EVENTS = "/api/v1/messenger-events";
  const RETRY_STATUSES = [429, 502, 503, 504]; // answers that say "not processed, try again"
  const MAX_ATTEMPTS = 4;
  const DEFAULT_DELAYS_MS = [1000, 2000, 4000];
  const MAX_RETRY_AFTER_MS = 10000; // a visitor waits on the form: never longer than this between attempts
  const GO_PATH = /^\/go\/(telegram|whatsapp|instagram)\/?$/;

  // The API's own rules (crm_bridge.normalization): what the snippet keeps is never refused later,
  // and an invalid value is dropped rather than sent.
  const REFERRAL_CODE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const CLICK_ID = /^[A-Za-z0-9_\-.~]{1,512}$/;
  const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;
  const PAGE_URL = /^https?:\/\/[!-~]*$/; // visible ASCII, as browsers write a location: nothing invisible
  const MAX_PAGE_LENGTH = 2048;
  const MAX_TEXT_LENGTH = 255;
  const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;
  // Controls (C0 but tab and newline, which become spaces; DEL; C1), bidi controls, which reorder what a
  // reader sees, zero-width space, BOM and noncharacters (SQS refuses U+FFFE/U+FFFF).
  const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\p{Noncharacter_Code_Point}]/gu;

  /** Free text (UTM tags) as the API cleans it: NFC, nothing invisible, one space between words;
   * null when empty or longer than maxLength characters (code points, as Python counts). */
  function cleanText(value, maxLength = MAX_TEXT_LENGTH) {
    if (typeof value !== "string") return null;
    const text = value.normalize("NFC").replace(HIDDEN, "").replace(/\s+/g, " ").trim();
    return text && [...text].length <= maxLength ? text : null;
  }
  const matching = (pattern) => (value) => {
    const text = typeof value === "string" ? value.trim() : "";
    return pattern.test(text) ? text : null;
  };
  const validReferralCode = matching(REFERRAL_CODE);
  const validClickId = matching(CLICK_ID);
  const validPage = (value) =>
    (typeof value === "string" && value.length <= MAX_PAGE_LENGTH && PAGE_URL.test(value) ? value : null);
  const validTime = (value) =>
    (typeof value === "string" && ISO_TIME.test(value) && !isNaN(Date.parse(value)) ? value : null);

  const RULES = { referral_code: validReferralCode, landing_page: validPage, referrer: validPage,
    touched_at: validTime };
  UTM.forEach((tag) => { RULES[tag] = cleanText; });
  CLICK_IDS.forEach((tag) => { RULES[tag] = validClickId; });

  /** A touch with only known keys and valid values; null without a valid touched_at. Applied to what the
   * cookie holds too: a cookie is visitor input like any other. */
  function cleanTouch(raw) {
    if (!raw || typeof raw !== "object") return null;
    const touch = {};
    for (const key of [...TAGS, "landing_page", "referrer", "touched_at"]) {
      const value = RULES[key](raw[key]);
      if (value !== null) touch[key] = value;
    }
    return touch.touched_at ? touch : null;
  }

  /** A page without its query or fragment, which may hold personal data (an e-mail in a reset link). */
  function pageOf(url) {
    try {
      const parsed = new URL(url);
      return validPage(parsed.origin + parsed.pathname);
    } catch {
      return null;
    }
  }

  const within = (host, domain) => host === domain || host.endsWith("." + domain);

  /** The touch an arrival at `url` makes: its tags, the landing page, the referrer when it is outside
   * siteDomain (that domain, its subdomains, or the current host). */
  function touchFromLocation(url, referrer, now, siteDomain) {
    const location = new URL(url);
    const raw = { landing_page: pageOf(url), touched_at: new Date(now).toISOString() };
    for (const tag of TAGS) raw[tag] = location.searchParams.get(param(tag));
    const host = location.hostname;
    const domain = (siteDomain || host).replace(/^\./, "").toLowerCase();
    let from = null;
    try { from = referrer ? new URL(referrer).hostname : null; } catch { /* not a URL: no referrer */ }
    if (from && from !== host && !within(from, domain)) raw.referrer = pageOf(referrer);
    return cleanTouch(raw);
  }

  /** Attributed: the arrival says where the visitor came from (tags or an external referrer). */
  const isAttributed = (touch) => !!touch && (TAGS.some((tag) => tag in touch) || "referrer" in touch);
  const alive = (touch, now, lifetimeDays) =>
    !!touch && new Date(now) - Date.parse(touch.touched_at) < lifetimeDays * 86400000;

  /** {f, l} after an arrival. The first touch is kept while it lives (lifetimeDays from its touched_at),
   * else the arrival becomes first and last touch; an attributed arrival replaces the last touch; a page
   * view that says nothing new (internal, direct) changes nothing. */
  function mergeTouches(stored, arrival, now, lifetimeDays) {
    const first = stored && alive(stored.f, now, lifetimeDays) ? stored.f : null;
    if (!first) return { f: arrival, l: arrival };
    if (isAttributed(arrival)) return { f: first, l: arrival };
    return { f: first, l: alive(stored.l, now, lifetimeDays) ? stored.l : first };
  }

  /** Shed what matters least until the cookie fits: click ids (first touch's, then last's), referrers,
   * UTM tags, landing pages. The referral code and times always fit. */
  const SHEDDING = [["f", CLICK_IDS], ["l", CLICK_IDS], ["fl", ["referrer"]], ["fl", UTM], ["fl", ["landing_page"]]];
  function boundTouches(touches) {
    const bounded = { f: touches.f && { ...touches.f }, l: touches.l && { ...touches.l } };
    const encode = () => encodeURIComponent(JSON.stringify(bounded));
    let value = encode();
    for (const [which, keys] of SHEDDING) {
      if (value.length <= MAX_COOKIE_BYTES) break;
      for (const side of which) keys.forEach((key) => bounded[side] && delete bounded[side][key]);
      value = encode();
    }
    return { value, touches: bounded };
  }

  /** Seconds (or an HTTP date) from Retry-After, capped; the fallback when absent or unreadable. */
  function retryDelayMs(retryAfter, fallbackMs, now = Date.now()) {
    const text = (retryAfter || "").trim();
    let ms = /^\d+$/.test(text) ? Number(text) * 1000 : text ? Date.parse(text) - now : NaN;
    if (isNaN(ms)) ms = fallbackMs;
    return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
  }

  // ---- the page: configuration, cookies, capture ------------------------------------------------------

  const script = document.currentScript;
  const fromScript = {};
  if (script) {
    const data = script.dataset;
    if ("api" in data) fromScript.api = data.api;
    if (data.cookieDomain) fromScript.cookieDomain = data.cookieDomain;
    if (data.lifetimeDays) fromScript.lifetimeDays = data.lifetimeDays;
    if (data.consentVersion) fromScript.consentVersion = data.consentVersion;
    if (data.consent) fromScript.consent = data.consent;
  }
  const config = { api: "", cookieDomain: "", lifetimeDays: 90, consentVersion: "", consent: "" };
  // consent: the visitor's answer through consent(), null until then (the page's configuration decides).
  const state = { first: null, last: null, session: null, captured: false, consent: null };
  /** Our cookies may be read and written (ePrivacy covers reading what a device holds as well). */
  const storing = () => state.consent ?? config.consent !== "required";

  /** The configured cookie domain when it covers this host; otherwise host-only (a cookie for another
   * domain would be refused by the browser, and nothing stored). */
  function cookieDomain() {
    const domain = String(config.cookieDomain || "").replace(/^\./, "").toLowerCase();
    return domain && within(location.hostname, domain) ? domain : "";
  }
  function writeCookie(name, value, maxAgeSeconds, domain) {
    document.cookie = `${name}=${value}; path=/; max-age=${maxAgeSeconds}; SameSite=Lax` +
      (location.protocol === "https:" ? "; Secure" : "") + (domain ? `; domain=${domain}` : "");
  }
  /** Every value of a cookie: a host-only and a domain cookie of the same name may both be sent. */
  function readCookie(name) {
    return document.cookie.split(";").map((part) => part.trim().split("=")).filter(([key]) => key === name)
      .map(([, ...value]) => value.join("="));
  }
  const removeCookies = (domain) => [TOUCH_COOKIE, SESSION_COOKIE].forEach((name) => writeCookie(name, "", 0, domain));
  const lastTouchedAt = (touches) => Date.parse((touches.l || touches.f).touched_at);
  /** The newer of the touch cookies (a host-only one, from before data-cookie-domain, may be stale). */
  function readTouches() {
    let newest = null;
    for (const value of readCookie(TOUCH_COOKIE)) {
      try {
        const stored = JSON.parse(decodeURIComponent(value));
        const touches = { f: cleanTouch(stored && stored.f), l: cleanTouch(stored && stored.l) };
        if (touches.f && (!newest || lastTouchedAt(touches) > lastTouchedAt(newest))) newest = touches;
      } catch { /* corrupt: as if absent */ }
    }
    return newest;
  }
  /** {touches, session} of our cookies, none unless storing. The host-only cookies from before the cookie
   * domain (and those of a domain init() moved from) are removed: capture writes these on the domain. */
  function readStored(staleDomain) {
    if (!storing()) return {};
    const touches = readTouches();
    const sessions = readCookie(SESSION_COOKIE).filter((value) => SESSION_ID.test(value));
    if (cookieDomain()) removeCookies("");
    if (staleDomain !== undefined) removeCookies(staleDomain);
    const left = readCookie(SESSION_COOKIE);
    // A host-only and a domain session: keep the host-only one. Older, it comes first in document.cookie,
    // so it is the one this host's clicks and applications have carried: the CRM knows the visitor by it.
    return { touches, session: sessions.find((value) => !left.includes(value)) || sessions[0] };
  }
  function randomId(bytes) {
    const random = crypto.getRandomValues(new Uint8Array(bytes));
    return btoa(String.fromCharCode(...random)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  /** One key per submission; randomUUID exists only on https pages (secure contexts). */
  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : randomId(16));

  /** This page's arrival merged into the stored touches; without storing, the page's own in memory. */
  function capture(staleDomain) {
    const now = new Date();
    const stored = readStored(staleDomain);
    // 16 random bytes: 22 URL-safe characters, as the API's /go makes them
    const session = stored.session || state.session || randomId(16);
    const domain = cookieDomain();
    const siteDomain = domain || location.hostname.replace(/^www\./, "");
    const arrival = touchFromLocation(location.href, document.referrer, now, siteDomain);
    const { value, touches } = boundTouches(mergeTouches(stored.touches, arrival, now, config.lifetimeDays));
    if (storing()) {
      writeCookie(TOUCH_COOKIE, value, Math.round(config.lifetimeDays * 86400), domain);
      writeCookie(SESSION_COOKIE, session, SESSION_DAYS * 86400, domain);
    }
    Object.assign(state, { first: touches.f, last: touches.l, session, captured: true });
  }

  /** Configure (data attributes first, then options) and capture this page view; again to override. */
  function init(options = {}) {
    const previousDomain = state.captured ? cookieDomain() : undefined;
    Object.assign(config, state.captured ? {} : fromScript, options);
    config.api = String(config.api || "").replace(/\/+$/, "");
    config.lifetimeDays = Number(config.lifetimeDays) > 0 ? Number(config.lifetimeDays) : 90;
    capture(previousDomain !== undefined && previousDomain !== cookieDomain() ? previousDomain : undefined);
    return window.CrmBridge;
  }
  const ensureInit = () => state.captured || init();

  /** The visitor's answer to the site's cookie banner. true: our cookies are read and written from now on,
   * this page's arrival merged in; false: they are deleted, and the page goes on in memory. Not
   * remembered: the banner answers again on each page, from its own stored choice. */
  function consent(granted) {
    state.consent = granted === true;
    if (!state.consent) ["", cookieDomain()].forEach(removeCookies);
    else if (state.captured) capture();
    return window.CrmBridge;
  }

  /** The touches as the cookie has them now (another tab may have moved on), else as captured here. */
  function touches() {
    ensureInit();
    const stored = storing() && readTouches();
    return stored ? { first: stored.f, last: stored.l || stored.f } : { first: state.first, last: state.last };
  }
  function sessionId() {
    ensureInit();
    return state.session;
  }
  const compact = (object) =>
    Object.fromEntries(Object.entries(object).filter(([, value]) => value != null && value !== ""));

  // ---- talking to the API -------------------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** POST with one Idempotency-Key and one body for every attempt: the API answers a retry of a submission
   * it already took with its first answer, and refuses the key with another body. */
  async function post(path, body, options = {}) {
    ensureInit();
    const key = options.idempotencyKey || newKey();
    const delays = options.retryDelaysMs || DEFAULT_DELAYS_MS;
    const payload = JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let response = null;
      let failure = null;
      try {
        response = await fetch(config.api + path, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
          body: payload,
          credentials: "include",
          keepalive: !!options.keepalive,
        });
      } catch (error) {
        failure = error;
      }
      if (attempt >= MAX_ATTEMPTS || !(failure || RETRY_STATUSES.includes(response.status))) {
        if (failure) throw new Error(`crm-bridge: ${path} could not be reached`, { cause: failure });
        let answer = null;
        try { answer = await response.json(); } catch { /* no JSON body */ }
        return { status: response.status, body: answer };
      }
      const fallback = delays[Math.min(attempt - 1, delays.length - 1)];
      await sleep(retryDelayMs(response && response.headers.get("Retry-After"), fallback));
    }
  }

  function applicationBody(fields, options = {}) {
    const body = {};
    for (const name of FORM_FIELDS) {
      const value = fields[name] == null ? "" : String(fields[name]).trim();
      if (value) body[name] = value;
    }
    const { first, last } = touches();
    Object.assign(body, compact({ session_id: state.session, first_touch: first, last_touch: last }));
    if (fields.consent === true) {
      Object.assign(body, compact({
        consent: true,
        consent_version: options.consentVersion || config.consentVersion,
        consent_at: new Date().toISOString(),
        consent_page: pageOf(location.href),
      }));
    }
    return body;
  }

  /** Resolves to {status, body} of the API's final answer; rejects when it could not be reached. */
  function submitApplication(fields, options = {}) {
    return post(APPLICATIONS, applicationBody(fields || {}, options), options);
  }

  function formFields(form) {
    const data = new FormData(form);
    const fields = {};
    for (const name of FORM_FIELDS) if (typeof data.get(name) === "string") fields[name] = data.get(name);
    const consent = form.elements.namedItem("consent");
    fields.consent = consent && consent.type === "checkbox" ? consent.checked : data.get("consent") === "true";
    return fields;
  }

  /** Sends the form through submitApplication; dispatches "crm-bridge:result" ({status, body}) or
   * "crm-bridge:error" ({error}) on it. A resubmission of the same fields after no answer, a 5xx or a
   * 429 resends the same key and body (the API may have taken the first); otherwise a new submission. */
  function attachForm(form, options = {}) {
    let unanswered = null; // {fingerprint, key, body}
    let busy = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (busy) return; // a double click is one submission
      busy = true;
      const fields = formFields(form);
      const consentVersion = form.dataset.consentVersion || options.consentVersion;
      const fingerprint = JSON.stringify([fields, consentVersion || ""]);
      if (!unanswered || unanswered.fingerprint !== fingerprint) {
        unanswered = { fingerprint, key: newKey(), body: applicationBody(fields, { consentVersion }) };
      }
      const { key, body } = unanswered;
      try {
        const result = await post(APPLICATIONS, body, { ...options, idempotencyKey: key });
        if (result.status < 500 && !RETRY_STATUSES.includes(result.status)) unanswered = null;
        form.dispatchEvent(new CustomEvent("crm-bridge:result", { detail: result, bubbles: true }));
      } catch (error) {
        form.dispatchEvent(new CustomEvent("crm-bridge:error", { detail: { error }, bubbles: true }));
      } finally {
        busy = false;
      }
    });
    return form;
  }

  /** For sites that open a messenger themselves (no /go link): the click, for the visitor's lead. */
  function reportClick(channel, options = {}) {
    const { first, last } = touches();
    const body = compact({
      channel,
      session_id: state.session,
      page: pageOf(location.href),
      occurred_at: new Date().toISOString(),
      first_touch: first,
      last_touch: last,
    });
    return post(MESSENGER_EVENTS, body, { ...options, keepalive: true }); // keepalive: the page may be leaving
  }

  /** The session cookie goes to the API's host by itself: it is stored, on a domain that has that host. */
  function sessionCookieReaches(apiHost) {
    const domain = cookieDomain();
    return storing() && (domain ? within(apiHost, domain) : apiHost === location.hostname) &&
      readCookie(SESSION_COOKIE).includes(state.session);
  }

  /** The URL, parsed, when it is a /go/{channel} link of the API; else null. */
  function goLink(url) {
    try {
      const link = new URL(url, location.href);
      const api = new URL(config.api || location.origin, location.href);
      return link.origin === api.origin && GO_PATH.test(link.pathname) ? link : null;
    } catch {
      return null;
    }
  }

  /** A /go/{channel} link of the API with the visitor's ref and last touch's tags added, and the session id
   * (vs) where its cookie cannot reach the API (a session on a link goes wherever the link is copied);
   * those the link does not already carry. Any other URL unchanged. */
  function decorate(url) {
    ensureInit();
    const link = goLink(url);
    if (!link) return String(url);
    const { first, last } = touches();
    const added = { ref: (last && last.referral_code) || (first && first.referral_code),
      vs: sessionCookieReaches(link.hostname) ? null : state.session };
    for (const tag of [...UTM, ...CLICK_IDS]) added[tag] = last && last[tag];
    let changed = false;
    for (const [name, value] of Object.entries(added)) {
      if (value && !link.searchParams.has(name)) {
        link.searchParams.set(name, value);
        changed = true;
      }
    }
    return changed ? link.href : String(url);
  }

  /** Capturing, on document: links added later are decorated too, just before the navigation. */
  function onLinkActivated(event) {
    const anchor = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (!(anchor instanceof HTMLAnchorElement)) return;
    const decorated = decorate(anchor.href);
    if (decorated !== anchor.href) anchor.href = decorated;
    // /go takes vs only with a Referer of the site: the link's own policy overrides the page's (no-referrer).
    if (goLink(decorated)?.searchParams.has("vs")) anchor.referrerPolicy = "strict-origin-when-cross-origin";
  }
  document.addEventListener("click", onLinkActivated, true);
  document.addEventListener("auxclick", onLinkActivated, true); // middle click: a new tab

  window.CrmBridge = {
    init,
    consent,
    touches,
    sessionId,
    submitApplication,
    attachForm,
    reportClick,
    decorate,
    rules: { touchFromLocation, mergeTouches, cleanText, cleanTouch, validReferralCode, validClickId, validPage,
      boundTouches, retryDelayMs, isAttributed },
  };

  // With data-api the tag says everything: capture now. Otherwise wait for the page's own init(), if any.
  if (script && script.hasAttribute("data-api")) init();
  else if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ensureInit);
  else setTimeout(ensureInit, 0);
})();
