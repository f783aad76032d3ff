() => {
  // Review shortcuts: Space or Enter reveals the answer, 1-4 rate Again/Hard/Good/Easy.
  // Ignored while typing, and only buttons that are on screen are clicked.
  const visible = (el) => el && el.offsetParent !== null && !el.disabled;
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    if (["input", "textarea", "select"].includes(tag) || (target && target.isContentEditable)) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    let button = null;
    if (["1", "2", "3", "4"].includes(event.key)) {
      button = document.getElementById("rate-" + event.key);
    } else if (event.key === " " || event.key === "Enter") {
      button = document.getElementById("review-reveal");
    }
    if (visible(button)) {
      event.preventDefault();
      button.click();
    }
  });
}
