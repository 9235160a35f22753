// Analytic Diffusion: small fixes on top of sphinx-book-theme (loaded on every page).
//
// pydata-sphinx-theme 0.17.1 and sphinx-book-theme 1.3.0 both bind their handlers to the FIRST
// `.primary-toggle` in the page (pydata-sphinx-theme issue #2451), but the button a reader sees is
// sphinx-book-theme's, the second one, so the menu button did nothing. Forward its clicks (and those
// of any other duplicate, primary or secondary) to the first button, which carries both handlers:
// it hides the sidebar on wide screens and opens the menu dialog on narrow ones.
document.addEventListener("DOMContentLoaded", () => {
  for (const selector of [".primary-toggle", ".secondary-toggle"]) {
    const buttons = Array.from(document.querySelectorAll(selector));
    buttons.slice(1).forEach((button) => {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        buttons[0].click();
      });
    });
  }
});
