// The demo page: Login with Amazon through LWA's JavaScript SDK, as Amazon
// documents it for browsers (Authorization Code grant with PKCE), then calls to
// the protected API with the token in an Authorization header.
//
// The SDK comes from config.sdk_url: the emulator's stand-in here, Amazon's
// https://assets.loginwithamazon.com/sdk/na/login1.js in production. Nothing
// else changes between the two.
//
// 1. Sign in: a random state goes to sessionStorage, then
//    amazon.Login.authorize({scope, pkce: true, popup: false, state}, "/callback")
//    sends the browser to LWA's consent page (the SDK keeps the PKCE verifier).
// 2. Back on /callback?code=...&state=...: the code leaves the address bar at
//    once (history.replaceState), the state must be the one this tab sent, and
//    amazon.Login.retrieveToken(code, ...) exchanges the code. No client
//    secret: a browser cannot keep one.
// 3. The access token lives in sessionStorage (this tab only), never in a URL,
//    and travels as "Authorization: Bearer ..." to the API.
"use strict";

(() => {
  const TOKEN_KEY = "lwa-demo:token";
  const STATE_KEY = "lwa-demo:state";
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

  function randomString(size) {
    const bytes = new Uint8Array(size);
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
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

  // Loads LWA's SDK the way Amazon's install snippet does: into #amazon-root,
  // with window.onAmazonLoginReady called once it is there.
  function loadSdk(src, clientId) {
    return new Promise((resolve, reject) => {
      window.onAmazonLoginReady = () => {
        amazon.Login.setClientId(clientId);
        resolve();
      };
      const script = document.createElement("script");
      script.id = "amazon-login-sdk";
      script.async = true;
      script.src = src;
      script.onerror = () => reject(new Error("the LWA SDK did not load"));
      $("amazon-root").appendChild(script);
    });
  }

  function login() {
    const state = randomString(16);
    sessionStorage.setItem(STATE_KEY, state);
    amazon.Login.authorize(
      { scope: config.scopes, pkce: true, popup: false, state: state },
      redirectUri(),
    );
  }

  function retrieveToken(code) {
    return new Promise((resolve) => amazon.Login.retrieveToken(code, resolve));
  }

  // Reads the answer of the sign-in page (?code=...&state=... or ?error=...)
  // and, if this tab asked for it, has the SDK exchange the code for a token.
  async function takeCallback() {
    if (location.pathname !== "/callback" || !location.search) return;
    const params = new URLSearchParams(location.search);
    // The code must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", "/");
    const expected = sessionStorage.getItem(STATE_KEY);
    // One answer per sign-in: whatever happens next, the state is used up.
    sessionStorage.removeItem(STATE_KEY);
    if (!expected || params.get("state") !== expected) {
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
    const response = await retrieveToken(code);
    if (response.error || typeof response.access_token !== "string") {
      notice("LWA refused the sign-in code: " + (response.error || "no token") + " (" + (response.error_description || "") + ")", "error");
      return;
    }
    token = response.access_token;
    sessionStorage.setItem(TOKEN_KEY, token);
    notice("Signed in. LWA's SDK exchanged the one-time code for a token (PKCE); the token never appeared in a URL.", "ok");
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
    amazon.Login.logout();
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
    try {
      await loadSdk(config.sdk_url, config.client_id);
    } catch (_) {
      notice("Login with Amazon's SDK did not load: is the LWA emulator still running?", "error");
      return;
    }
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
