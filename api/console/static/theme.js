// Runs before the page paints: the theme chosen with the toggle (else the system's).
(function () {
  try {
    var saved = localStorage.getItem("polaris-theme");
    if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  } catch (e) { /* storage disabled: the system theme applies */ }
})();
