// contentline dashboard: the little that htmx does not do. No inline script anywhere (CSP script-src 'self').
(function () {
  "use strict";

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
  });

  // Dialogs: a button with data-open-dialog="id" opens it (focus moves in; Escape closes it natively).
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var opener = target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog && !dialog.open) { dialog.showModal(); }
      return;
    }
    var closer = target.closest("[data-close-dialog]");
    if (closer) {
      var open = document.getElementById(closer.getAttribute("data-close-dialog"));
      if (open) { open.close(); }
      return;
    }
    if (target.closest("[data-dismiss]")) {
      var alert = target.closest(".alert");
      if (alert) { alert.remove(); }
    }
  });

  // A saved configuration closes its dialog and gives focus back to the button that opened it.
  document.addEventListener("config-saved", function () {
    var dialog = document.getElementById("config-dialog");
    if (dialog && dialog.open) { dialog.close(); }
    var button = document.getElementById("configure");
    if (button) { button.focus(); }
  });

  // A live swap (server push) must not take keyboard focus away: remember what had it, give it back.
  var focusedId = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var active = document.activeElement;
    focusedId = active && active.id ? active.id : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (focusedId && (!document.activeElement || document.activeElement === document.body)) {
      var again = document.getElementById(focusedId);
      if (again && !again.disabled) { again.focus(); }
    }
    focusedId = null;
  });

  // A configuration that did not validate: focus its first field with a message (screen readers read it).
  document.addEventListener("htmx:afterSettle", function (event) {
    var form = event.target instanceof Element && event.target.id === "config-form" ? event.target : null;
    var bad = form ? form.querySelector('[aria-invalid="true"]') : null;
    if (bad) { bad.focus(); }
  });

  // An alert that arrives is announced (role=alert) and focusable, so keyboard users find it.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "alerts") {
      var first = event.detail.target.querySelector(".alert");
      if (first) { first.setAttribute("tabindex", "-1"); first.focus(); }
    }
  });
})();
