// The demo page: Login with Amazon with the Authorization Code grant and PKCE
// (S256), then calls to the protected API with the token in an Authorization
// header.
//
// 1. Sign in: a random state and code verifier go to sessionStorage, the
//    browser goes to LWA's /ap/oa with the verifier's SHA-256 (the challenge).
// 2. Back on /callback?code=...&state=...: the code leaves the address bar at
//    once (history.replaceState), the state must be the one this tab sent,
//    and the code is exchanged at LWA's token endpoint with the verifier. No
//    client secret: a browser cannot keep one.
// 3. The access token lives in sessionStorage (this tab only), never in a URL,
//    and travels as "Authorization: Bearer ..." to the API.
"use strict";

(() => {
  const TOKEN_KEY = "lwa-demo:token";
  const STATE_KEY = "lwa-demo:state";
  const VERIFIER_KEY = "lwa-demo:verifier";
  const STAT_LABELS = {
    lookups: "Lookups sent to LWA",
    hits: "Answered from the cache",
    misses: "Cache misses",
    coalesced: "Joined a lookup in flight",
    rejected: "Tokens LWA rejected",
    rejections_cached: "Rejections answered from memory",
    shared_hits: "Answered from the shared cache",
    stale_served: "Served stale while LWA failed",
    upstream_errors: "LWA failures",
    upstream_seconds: "Time spent waiting for LWA",
  };

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let scopes = [];
  let config = null;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function notice(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = "notice " + (kind || "info");
    box.hidden = !text;
  }

  function base64url(bytes) {
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(size) {
    const bytes = new Uint8Array(size);
    crypto.getRandomValues(bytes);
    return base64url(bytes);
  }

  // RFC 7636: the S256 challenge is BASE64URL(SHA-256(verifier)).
  async function s256(verifier) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return base64url(new Uint8Array(digest));
  }

  function redirectUri() {
    return location.origin + "/callback";
  }

  function challengeParam(challenge, name) {
    const match = new RegExp(name + '="([^"]*)"').exec(challenge || "");
    return match ? match[1] : null;
  }

  function log(method, path, status, ms) {
    const item = element("li");
    item.append(
      element("span", "method", method),
      element("span", "path", path),
      element("span", "status s" + String(status)[0], String(status)),
      element("span", "ms", ms.toFixed(0) + " ms"),
    );
    const list = $("log");
    list.prepend(item);
    while (list.children.length > 8) list.lastChild.remove();
  }

  async function api(method, path) {
    const headers = { Accept: "application/json" };
    if (token && path !== "/api/stats") headers.Authorization = "Bearer " + token;
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, { method, headers, cache: "no-store" });
    } catch (err) {
      notice("The demo server cannot be reached: is it still running?", "error");
      throw err;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (path !== "/api/stats") {
      log(method, path, response.status, performance.now() - started);
      refreshStats();
    }
    return {
      status: response.status,
      body: body || {},
      challenge: response.headers.get("WWW-Authenticate") || "",
      retryAfter: response.headers.get("Retry-After"),
    };
  }

  // -- sign in ----------------------------------------------------------------

  async function login() {
    if (!config) return;
    const state = randomString(16);
    const verifier = randomString(32); // 43 characters, the RFC 7636 minimum
    sessionStorage.setItem(STATE_KEY, state);
    sessionStorage.setItem(VERIFIER_KEY, verifier);
    const params = new URLSearchParams({
      client_id: config.client_id,
      scope: config.scopes.join(" "),
      response_type: "code",
      redirect_uri: redirectUri(),
      state: state,
      code_challenge: await s256(verifier),
      code_challenge_method: "S256",
    });
    location.assign(config.authorize_url + "?" + params.toString());
  }

  // Reads the answer of the sign-in page (?code=...&state=... or ?error=...)
  // and, if this tab asked for it, exchanges the code for a token.
  async function takeCallback() {
    if (location.pathname !== "/callback" || !location.search) return;
    const params = new URLSearchParams(location.search);
    // The code must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", "/");
    const expected = sessionStorage.getItem(STATE_KEY);
    const verifier = sessionStorage.getItem(VERIFIER_KEY);
    // One answer per sign-in: whatever happens next, these are used up.
    sessionStorage.removeItem(STATE_KEY);
    sessionStorage.removeItem(VERIFIER_KEY);
    if (!expected || !verifier || params.get("state") !== expected) {
      // Someone else started this sign-in (login CSRF): drop what it carries.
      notice("Ignored a sign-in answer this page did not ask for (its state does not match).", "error");
      return;
    }
    if (params.get("error")) {
      notice("Sign-in did not complete: " + params.get("error") + " (" + (params.get("error_description") || "") + ")", "error");
      return;
    }
    const code = params.get("code");
    if (!code) return;
    let response;
    let body = {};
    try {
      response = await fetch(config.token_url, {
        method: "POST",
        // A form body: a "simple" cross-origin request, no preflight needed.
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code: code,
          redirect_uri: redirectUri(),
          client_id: config.client_id,
          code_verifier: verifier,
        }),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
      body = await response.json();
    } catch (_) {
      notice("LWA's token endpoint cannot be reached or answered nonsense.", "error");
      return;
    }
    if (!response.ok || typeof body.access_token !== "string") {
      notice("LWA refused the sign-in code: " + (body.error || "HTTP " + response.status) + " (" + (body.error_description || "") + ")", "error");
      return;
    }
    token = body.access_token;
    sessionStorage.setItem(TOKEN_KEY, token);
    notice("Signed in. The page exchanged its one-time code for a token (PKCE); the token never appeared in a URL.", "ok");
  }

  function signedOut(message, kind) {
    token = null;
    scopes = [];
    sessionStorage.removeItem(TOKEN_KEY);
    $("signed-in").hidden = true;
    $("signed-out").hidden = false;
    $("who").hidden = true;
    $("shipping-result").hidden = true;
    if (message) notice(message, kind);
  }

  // -- protected calls --------------------------------------------------------

  function formatExpiry(seconds) {
    if (seconds >= 120) return "in " + Math.round(seconds / 60) + " minutes";
    return "in " + seconds + " seconds";
  }

  async function loadProfile() {
    const r = await api("GET", "/api/me");
    if (r.status === 200) {
      const who = r.body.identity;
      scopes = who.scopes || [];
      $("name").textContent = who.name || "(not shared)";
      $("email").textContent = who.email || "(not shared)";
      $("postal-code").textContent = who.postal_code || "(not shared)";
      $("user-id").textContent = who.user_id;
      $("expires").textContent = formatExpiry(r.body.expires_in);
      const chips = $("scopes");
      chips.replaceChildren(...scopes.map((s) => element("span", "chip", s)));
      $("who").textContent = r.body.display_name;
      $("who").hidden = false;
      $("signed-out").hidden = true;
      $("signed-in").hidden = false;
    } else if (r.status === 401) {
      signedOut("Your token was refused (" + (r.body.error_description || r.body.error) + "). Please sign in again.", "error");
    } else if (r.status === 503) {
      notice("LWA is unavailable right now; the middleware fails closed. Retry in " + (r.retryAfter || "a few") + " s.", "error");
    } else {
      notice("Unexpected answer from /api/me: HTTP " + r.status, "error");
    }
  }

  async function shipping() {
    const r = await api("GET", "/api/shipping");
    const out = $("shipping-result");
    out.hidden = false;
    out.replaceChildren();
    if (r.status === 200) {
      out.className = "result ok";
      out.append(element("strong", "", "200 OK"), element("p", "", r.body.message));
      return;
    }
    out.className = "result denied";
    if (r.status === 403) {
      const needed = challengeParam(r.challenge, "scope") || "?";
      const held = scopes.length ? scopes.join(", ") : "no profile scope";
      out.append(
        element("strong", "", "403 Forbidden · " + (r.body.error || "insufficient_scope")),
        element(
          "p",
          "",
          "This API needs the “" + needed + "” scope, but your token only grants: " + held +
            ". You signed in without sharing it. Log out, sign in again and keep “" + needed +
            "” ticked on the Amazon page.",
        ),
        element("p", "small", "Server said: " + (r.body.error_description || "")),
        element("code", "header", "WWW-Authenticate: " + r.challenge),
      );
    } else if (r.status === 401) {
      signedOut("Your token was refused. Please sign in again.", "error");
    } else {
      out.append(element("strong", "", "HTTP " + r.status), element("p", "", r.body.error_description || ""));
    }
  }

  async function logout() {
    await api("POST", "/api/logout");
    signedOut("Logged out: the server dropped its cached identity for your token, and this page forgot the token.", "info");
  }

  async function refreshStats() {
    let data;
    try {
      data = await (await fetch("/api/stats", { cache: "no-store" })).json();
    } catch (_) {
      return;
    }
    const rows = Object.keys(STAT_LABELS)
      .filter((key) => key in data && (data[key] || !["shared_hits", "stale_served"].includes(key)))
      .map((key) => {
        const row = element("tr");
        const value = key === "upstream_seconds" ? (data[key] * 1000).toFixed(1) + " ms" : String(data[key]);
        row.append(element("th", "", STAT_LABELS[key]), element("td", "stat-" + key, value));
        return row;
      });
    $("stats").replaceChildren(...rows);
  }

  async function start() {
    $("login").addEventListener("click", login);
    $("refresh").addEventListener("click", loadProfile);
    $("shipping").addEventListener("click", shipping);
    $("logout").addEventListener("click", logout);
    config = await (await fetch("/api/config", { cache: "no-store" })).json();
    $("login").disabled = false;
    await takeCallback();
    if (token) {
      await loadProfile();
    } else {
      refreshStats();
    }
  }

  start();
})();
