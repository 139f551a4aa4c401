// The LWA emulator's stand-in for Amazon's "Login with Amazon SDK for
// JavaScript" (https://assets.loginwithamazon.com/sdk/na/login1.js), with the
// API of "Login with Amazon SDK for JavaScript Reference Guide"
// (developer.amazon.com/docs/login-with-amazon/javascript-sdk-reference.html).
// A page moves to production by changing the <script src> that loads it.
//
// Implemented: amazon.Login.setClientId / getClientId, authorize(options,
// next) with options.scope (string or array), state, scope_data, pkce,
// response_type and popup (true, the default: a popup window, then next is
// called with the response, or the page goes to next if it is a URL; false:
// the page itself goes to LWA and back to next, a URL), the AuthorizeRequest
// it returns (status, onComplete, and the response's fields once complete:
// code, scope, state, error, error_description), retrieveToken(code, cb)
// (PKCE: the verifier waits in a first-party cookie, so cookies must be on and
// the callback on the same site as authorize), retrieveProfile(token, cb)
// ({success, profile: {CustomerId, Name, PrimaryEmail, PostalCode}}),
// logout(), setUseCookie (the access token in the amazon_Login_accessToken
// cookie), setSiteDomain (the cookies' Domain) and setSandboxMode (kept,
// without effect: the emulator has no Amazon Pay sandbox). Loading calls
// window.onAmazonLoginReady, as Amazon's loader does.
//
// The popup's return URL is the emulator's own /sdk/popup (Amazon does not
// document the one its SDK uses; the app needs only an Allowed Origin).
//
// Left out: scope_data's meaning (it travels to /ap/oa, where the emulator lets the
// customer untick any requested scope, essential or not);
// options.interactive (the emulator keeps no customer session, so every
// authorize shows the consent page, like "always"); the implicit grant
// (response_type "token" reaches /ap/oa and is refused there, as LWA does).
// Assumptions (not in the pages read): the cookie names, and that a failed
// retrieveToken answers {error, error_description} like the token endpoint.
//
// The token and profile endpoints are called through a hidden frame on the
// emulator's origin (/sdk/relay) that accepts messages only from the app's
// registered origins: same-origin requests there, so no CORS is needed,
// because Amazon documents none on its token endpoint.
(function () {
  "use strict";

  var script = document.currentScript;
  var LWA = new URL(script.src).origin;
  var PKCE_COOKIE = "lwa_emulator_pkce";
  var TOKEN_COOKIE = "amazon_Login_accessToken";
  var RELAY_TIMEOUT_MS = 15000;

  var clientId = null;
  var siteDomain = null;
  var useCookie = false;
  // Kept but without effect: the emulator has no Amazon Pay sandbox.
  var sandboxMode = false;
  var accessToken = null;
  var relay = null;
  var waiting = new Map();
  var nextId = 1;

  function fail(message) {
    throw new Error("amazon.Login: " + message);
  }

  // -- cookies ------------------------------------------------------------------

  function cookieAttributes(maxAge) {
    var parts = ["Path=/", "SameSite=Lax", "Max-Age=" + maxAge];
    if (siteDomain) parts.push("Domain=" + siteDomain);
    if (location.protocol === "https:") parts.push("Secure");
    return "; " + parts.join("; ");
  }

  function setCookie(name, value, maxAge) {
    document.cookie = name + "=" + encodeURIComponent(value) + cookieAttributes(maxAge);
  }

  function getCookie(name) {
    var found = document.cookie.split("; ").find(function (item) {
      return item.indexOf(name + "=") === 0;
    });
    return found === undefined ? null : decodeURIComponent(found.slice(name.length + 1));
  }

  function clearCookie(name) {
    document.cookie = name + "=" + cookieAttributes(0);
  }

  // -- PKCE (RFC 7636, S256) -------------------------------------------------------

  function base64url(bytes) {
    var binary = "";
    bytes.forEach(function (b) {
      binary += String.fromCharCode(b);
    });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function newVerifier() {
    var bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    return base64url(bytes);
  }

  function s256(verifier) {
    return crypto.subtle
      .digest("SHA-256", new TextEncoder().encode(verifier))
      .then(function (digest) {
        return base64url(new Uint8Array(digest));
      });
  }

  // -- the relay frame on LWA's origin ----------------------------------------------

  function relayWindow() {
    if (relay) return relay;
    relay = new Promise(function (resolve, reject) {
      var frame = document.createElement("iframe");
      frame.hidden = true;
      frame.title = "Login with Amazon";
      var query = new URLSearchParams({ client_id: clientId, origin: location.origin });
      frame.src = LWA + "/sdk/relay?" + query.toString();
      var timer = setTimeout(function () {
        relay = null;
        frame.remove();
        reject(new Error("relay"));
      }, RELAY_TIMEOUT_MS);
      window.addEventListener("message", function (event) {
        if (event.origin !== LWA || event.source !== frame.contentWindow) return;
        var data = event.data || {};
        if (data.ready) {
          clearTimeout(timer);
          resolve(frame.contentWindow);
          return;
        }
        var done = waiting.get(data.id);
        if (done) {
          waiting.delete(data.id);
          done(data.answer);
        }
      });
      (document.getElementById("amazon-root") || document.body).appendChild(frame);
    });
    return relay;
  }

  // Resolves to {status, body}; status 0 when LWA cannot be reached from here.
  function call(op, payload) {
    return relayWindow().then(
      function (target) {
        return new Promise(function (resolve) {
          var id = nextId++;
          waiting.set(id, resolve);
          target.postMessage({ id: id, op: op, form: payload.form, token: payload.token }, LWA);
        });
      },
      function () {
        return { status: 0, body: {} };
      },
    );
  }

  function unreachable() {
    return {
      error: "server_error",
      error_description:
        "Login with Amazon cannot be reached from this page (is its origin one of the app's " +
        "Allowed Origins, and does the page's Content-Security-Policy allow frames from " + LWA + "?)",
    };
  }

  function answer(callback, response) {
    if (typeof callback === "function") callback(response);
    return response;
  }

  // -- amazon.Login ------------------------------------------------------------------

  function setClientId(id) {
    if (typeof id !== "string" || !id) fail("setClientId needs the app's client id");
    clientId = id;
  }

  function scopeOf(scope) {
    var list = Array.isArray(scope) ? scope : typeof scope === "string" ? scope.split(" ") : null;
    list = (list || []).filter(Boolean);
    if (!list.length) fail("options.scope is required: profile, profile:user_id, postal_code");
    return list.join(" ");
  }

  function AuthorizeRequest() {
    this.status = "queued";
    this.next = undefined;
  }

  AuthorizeRequest.prototype.onComplete = function (next) {
    this.next = next;
    return this;
  };

  function authorize(options, next) {
    if (!clientId) fail("call setClientId before authorize");
    options = options || {};
    var params = new URLSearchParams({
      client_id: clientId,
      scope: scopeOf(options.scope),
      // pkce: true sets response_type to code; Amazon's default is token.
      response_type: options.pkce ? "code" : options.response_type || "token",
    });
    if (options.state !== undefined) params.set("state", String(options.state));
    if (options.scope_data) params.set("scope_data", JSON.stringify(options.scope_data));
    var request = new AuthorizeRequest();
    if (next !== undefined) request.onComplete(next);
    var popup = null;
    var redirectUri;
    if (options.popup !== false) {
      // Opened now, inside the click that called authorize: popup blockers
      // allow nothing later.
      popup = window.open("about:blank", "amazon-login", "width=480,height=640");
      if (!popup) fail("the browser blocked the popup: call authorize from a click handler");
      redirectUri = LWA + "/sdk/popup?" + new URLSearchParams({ origin: location.origin });
      awaitPopup(popup, request);
    }
    // onComplete may still be called on the returned object, in this tick.
    Promise.resolve()
      .then(function () {
        if (!popup) {
          if (typeof request.next !== "string" || !request.next) {
            fail("with popup: false, next (or onComplete) must be the redirect URL");
          }
          redirectUri = new URL(request.next, location.href).href;
        }
        params.set("redirect_uri", redirectUri);
        if (!options.pkce) return null;
        var verifier = newVerifier();
        // Ten minutes: the consent page, then the code's five minutes at most.
        setCookie(PKCE_COOKIE, JSON.stringify({ c: clientId, r: redirectUri, v: verifier }), 600);
        return s256(verifier);
      })
      .then(function (challenge) {
        if (challenge) {
          params.set("code_challenge", challenge);
          params.set("code_challenge_method", "S256");
        }
        request.status = "in progress";
        var target = LWA + "/ap/oa?" + params.toString();
        if (popup) popup.location.href = target;
        else location.assign(target);
      });
    return request;
  }

  // The popup's last page (on LWA's origin) posts the answer here, then closes.
  function awaitPopup(popup, request) {
    function onMessage(event) {
      var data = event.data || {};
      if (event.origin !== LWA || event.source !== popup || !data.lwaPopup) return;
      window.removeEventListener("message", onMessage);
      var response = {};
      ["code", "scope", "state", "error", "error_description"].forEach(function (name) {
        if (data.params && typeof data.params[name] === "string") {
          response[name] = data.params[name];
          request[name] = data.params[name];
        }
      });
      request.status = response.status = "complete";
      if (typeof request.next === "function") {
        request.next(response);
      } else if (typeof request.next === "string" && request.next) {
        var back = new URL(request.next, location.href);
        Object.keys(response).forEach(function (name) {
          if (name !== "status") back.searchParams.set(name, response[name]);
        });
        location.assign(back.href);
      }
    }
    window.addEventListener("message", onMessage);
  }

  function savedPkce() {
    try {
      var saved = JSON.parse(getCookie(PKCE_COOKIE) || "null");
      return saved && saved.c === clientId ? saved : null;
    } catch (_) {
      return null;
    }
  }

  function retrieveToken(code, callback) {
    if (!clientId) fail("call setClientId before retrieveToken");
    var saved = savedPkce();
    // The verifier is good for one exchange, whatever its outcome.
    clearCookie(PKCE_COOKIE);
    if (!saved) {
      return Promise.resolve(
        answer(callback, {
          error: "invalid_request",
          error_description:
            "No code verifier: call authorize with pkce: true first, on this site, with cookies on.",
        }),
      );
    }
    var form = {
      grant_type: "authorization_code",
      code: String(code),
      redirect_uri: saved.r,
      client_id: clientId,
      code_verifier: saved.v,
    };
    return call("token", { form: form }).then(function (reply) {
      var body = reply.body || {};
      if (reply.status === 0) return answer(callback, unreachable());
      if (reply.status !== 200 || typeof body.access_token !== "string") {
        return answer(callback, {
          error: body.error || "server_error",
          error_description: body.error_description || "HTTP " + reply.status,
        });
      }
      accessToken = body.access_token;
      if (useCookie) setCookie(TOKEN_COOKIE, accessToken, Number(body.expires_in) || 3600);
      return answer(callback, {
        success: true,
        access_token: body.access_token,
        token_type: body.token_type,
        expires_in: body.expires_in,
      });
    });
  }

  function retrieveProfile(token, callback) {
    if (typeof token === "function") {
      callback = token;
      token = accessToken;
    }
    if (!token) {
      return Promise.resolve(answer(callback, { success: false, error: "No access token." }));
    }
    return call("profile", { token: String(token) }).then(function (reply) {
      var body = reply.body || {};
      if (reply.status === 0) {
        return answer(callback, { success: false, error: unreachable().error_description });
      }
      if (reply.status !== 200) {
        return answer(callback, {
          success: false,
          error: body.error_description || body.error || "HTTP " + reply.status,
        });
      }
      var profile = { CustomerId: body.user_id };
      if (body.name !== undefined) profile.Name = body.name;
      if (body.email !== undefined) profile.PrimaryEmail = body.email;
      if (body.postal_code !== undefined) profile.PostalCode = body.postal_code;
      return answer(callback, { success: true, profile: profile });
    });
  }

  function logout() {
    accessToken = null;
    clearCookie(TOKEN_COOKIE);
    clearCookie(PKCE_COOKIE);
  }

  function setSiteDomain(domain) {
    var host = location.hostname;
    if (typeof domain !== "string" || !(host === domain || host.endsWith("." + domain))) {
      fail("setSiteDomain needs this page's domain or a parent of it");
    }
    siteDomain = domain;
  }

  window.amazon = window.amazon || {};
  window.amazon.Login = {
    authorize: authorize,
    getClientId: function () {
      return clientId;
    },
    logout: logout,
    retrieveProfile: retrieveProfile,
    retrieveToken: retrieveToken,
    setClientId: setClientId,
    setSandboxMode: function (on) {
      sandboxMode = Boolean(on);
    },
    setSiteDomain: setSiteDomain,
    setUseCookie: function (on) {
      useCookie = Boolean(on);
    },
  };
  if (typeof window.onAmazonLoginReady === "function") window.onAmazonLoginReady();
})();
