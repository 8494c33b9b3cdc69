// Scan sign-in (api/console/routes_scan.py). On the QR page: the code is in the URL fragment
// (#k=… or #code=…), which no server sees; move it into the form, drop it from the address bar
// and history, and submit. On the waiting page: poll the exchange until signed in or refused.
(() => {
  const form = document.querySelector("[data-scan-form]");
  if (form) {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const code = fragment.get("k") || fragment.get("code");
    if (window.location.hash) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    const alreadyRefused = document.querySelector("[data-scan-error], .field-error");
    if (code && !alreadyRefused) {
      form.querySelector("[name=code]").value = code;
      form.submit();
    }
    return;
  }
  const wait = document.querySelector("[data-scan-wait]");
  if (!wait) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = wait.querySelector("[data-scan-status]");
  const error = wait.querySelector("[data-scan-error]");
  const retry = wait.querySelector("[data-scan-retry]");
  const url = `/console/scan/${encodeURIComponent(wait.dataset.scanId)}/exchange`;
  const fail = (message) => {
    status.textContent = "Not signed in.";
    error.textContent = message;
    error.hidden = false;
    retry.hidden = false;
  };
  const poll = async () => {
    let answer;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf },
        credentials: "same-origin",
      });
      answer = await response.json();
    } catch (_) {
      setTimeout(poll, 2000); // the network blinked: keep asking while the arm lives
      return;
    }
    if (answer.status === "waiting") {
      setTimeout(poll, 1000);
    } else if (answer.status === "signed_in") {
      status.textContent = "Signed in.";
      window.location.assign(answer.location);
    } else {
      fail(answer.message || "The sign-in was refused.");
    }
  };
  poll();
})();
