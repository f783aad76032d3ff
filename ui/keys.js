() => {
  // Review shortcuts. While a card is on screen, Space, Enter and 1-4 belong to the card:
  // Space or Enter reveals the answer, 1-4 pick a multiple-choice option before the
  // answer is shown and rate Again/Hard/Good/Easy after. The keys are taken in the
  // capture phase and their default action is cancelled on keydown and keyup, so they
  // never reach a focused button (Undo, Start): a browser activates a focused button on
  // Enter's keydown and on Space's keyup. Ignored while typing in a text field.
  const visible = (el) => el && el.offsetParent !== null && !el.disabled;
  const typing = (el) => {
    if (!el || !el.tagName) return false;
    const tag = el.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select" || el.isContentEditable) return true;
    return tag === "input" && !["radio", "checkbox", "button", "submit"].includes(el.type);
  };
  const cardOnScreen = () => {
    const question = document.getElementById("review-question");
    return visible(question) && question.innerText.trim() !== "";
  };
  const ours = (event) =>
    [" ", "Enter", "1", "2", "3", "4"].includes(event.key) &&
    !(event.ctrlKey || event.metaKey || event.altKey) &&
    !typing(event.target) &&
    cardOnScreen();
  const act = (key) => {
    const rating = document.getElementById("rate-" + key);
    if (visible(rating)) return rating.click();
    const options = document.querySelectorAll("#review-choices input[type=radio]");
    const option = options[Number(key) - 1];
    if (visible(option)) return option.click();
    const reveal = document.getElementById("review-reveal");
    if ((key === " " || key === "Enter") && visible(reveal)) reveal.click();
  };
  document.addEventListener(
    "keydown",
    (event) => {
      if (!ours(event)) return;
      event.preventDefault();
      event.stopPropagation();
      if (document.activeElement && document.activeElement.tagName === "BUTTON") {
        document.activeElement.blur();
      }
      if (!event.repeat) act(event.key);
    },
    true,
  );
  document.addEventListener(
    "keyup",
    (event) => {
      if (!ours(event)) return;
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );
}
