// MIND viewer: keyboard navigation only (j / → next, k / ← previous). The pages work without it.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.altKey || event.ctrlKey || event.metaKey || (target && target.closest && target.closest("input, select, textarea"))) {
    return;
  }
  const rel = { j: "next", ArrowRight: "next", k: "prev", ArrowLeft: "prev" }[event.key];
  const link = rel && document.querySelector(`a[rel="${rel}"]`);
  if (link) {
    window.location.href = link.href;
  }
});
